"""Summarise a study folder made by examples/Makefile as Markdown tables (mean ± std
over seeds, with the Student-t 95% interval of the mean), reading only the JSON reports
the commands wrote.

Run: python examples/summarize.py runs/cpu
     python examples/summarize.py out --readme README.md   # rewrite README's demo block
     python examples/summarize.py --prune-study runs/demo-prune   # the pruning study's table
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from wrapcli.core.stats import t_interval


def mean_std(xs: list[float], clamp: bool = True) -> str:
    """Percent: mean ± std [t-interval], the interval clamped to [0, 100] for accuracies."""
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{100 * xs[0]:.1f} (1 seed)"
    mean, lo, hi = t_interval(xs)
    lo, hi = (max(lo, 0), min(hi, 1)) if clamp else (lo, hi)
    return f"{100 * mean:.1f} ± {100 * statistics.stdev(xs):.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def results(path: Path) -> dict:
    return json.loads(path.read_text())["results"]


def pretrain_table(out: Path) -> None:
    groups = defaultdict(list)
    for f in sorted(out.glob("pt-*_eval.json")):
        prior = f.name.split("-")[1]
        groups[prior].append(results(f)["tasks"])
    if not groups:
        return
    print("| pretrained (prior) | seeds | count:a | count:b | majority a / b |")
    print("| --- | --- | --- | --- | --- |")
    for prior, runs in groups.items():
        a = [r["count:a"]["natural"]["accuracy"] for r in runs]
        b = [r["count:b"]["natural"]["accuracy"] for r in runs if "count:b" in r]
        maj = f"{100 * runs[0]['count:a']['natural']['majority_baseline']:.0f}"
        if "count:b" in runs[0]:
            maj += f" / {100 * runs[0]['count:b']['natural']['majority_baseline']:.0f}"
        print(f"| {prior} | {len(runs)} | {mean_std(a)} | {mean_std(b)} | {maj} |")
    print()


def finetune_table(out: Path) -> None:
    groups = defaultdict(list)
    for f in sorted(out.glob("ft-*_eval.json")):
        key = re.sub(r"-s\d+_eval\.json$", "", f.name)[3:]
        groups[key].append(results(f))
    if not groups:
        return
    cols = [("count:b", "C_Te=0"), ("count:b", "C_Te=1"), ("count:a", "C_Te=0"), ("count:a", "C_Te=1")]
    print("| fine-tune (prior-LR-C_Tr) | seeds | " + " | ".join(f"{t} {s}" for t, s in cols)
          + " | count:a conjugate a:c,c:a | majority (count:a natural) |")
    print("|" + " --- |" * (len(cols) + 4))
    for key, runs in groups.items():
        cells = [mean_std([r["tasks"][t][s]["accuracy"] for r in runs]) for t, s in cols]
        conj = mean_std([r["conjugate"]["tasks"]["count:a"]["natural"]["accuracy"] for r in runs if "conjugate" in r])
        maj = f"{100 * runs[0]['tasks']['count:a']['natural']['majority_baseline']:.0f}"
        print(f"| {key} | {len(runs)} | " + " | ".join(cells) + f" | {conj} | {maj} |")
    print()


def revive_table(out: Path) -> None:
    files = sorted(out.glob("revive-*.json"))
    if not files:
        return
    print("| reverse fine-tune of | LR | threshold | model | acc. at steps (mean ± std) "
          "| steps to threshold per seed | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for f in files:
        r = results(f)
        steps = r["eval_steps"]
        for i, m in enumerate(r["models"]):
            acc = m["accuracy"]
            curve = ", ".join(f"{s}: {100 * mu:.0f}±{100 * sd:.0f}" for s, mu, sd in zip(steps, acc["mean"], acc["std"]))
            reached = ", ".join("never" if x is None else f"{x:.0f}" for x in m["steps_to_threshold"]["per_seed"])
            verdict = r["speedup"]["verdict"] if i == 0 else ""
            print(f"| {f.stem[7:]} | {r['lr']:g} | {r['threshold']:.3f} | {m['name']} | {curve} | "
                  f"{reached} | {verdict} |")
    print()


def grouped(out: Path, prefix: str) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for f in sorted(out.glob(f"{prefix}-*.json")):
        groups[re.sub(r"-s\d+\.json$", "", f.name)[len(prefix) + 1 :]].append(results(f))
    return groups


def prune_table(out: Path, prefix: str = "prune", base_eval: str | None = None) -> None:
    """Accuracy at each K, and with ``base_eval`` (the unfine-tuned model's eval report)
    the recovered fraction (pruned - unpruned) / (base - unpruned) of count:a, per seed,
    then mean ± std [t-interval over seeds]."""
    groups = grouped(out, prefix)
    if not groups:
        return
    base = results(out / base_eval)["tasks"]["count:a"]["natural"]["accuracy"] if base_eval else None
    print("| pruned fine-tune | unit | K | count:a | count:b | count:a majority |"
          + (" recovered fraction of count:a |" if base is not None else ""))
    print("| --- | --- | --- | --- | --- | --- |" + (" --- |" if base is not None else ""))
    for key, runs in groups.items():
        for i, row in enumerate(runs[0]["sweep"]):
            a = [r["sweep"][i]["results"]["count:a"]["natural"]["accuracy"] for r in runs]
            b = [r["sweep"][i]["results"]["count:b"]["natural"]["accuracy"] for r in runs]
            maj = runs[0]["sweep"][i]["results"]["count:a"]["natural"]["majority_baseline"]
            cells = (f"| {key} ({len(runs)} seeds) | {runs[0]['unit']} | {row['k']} | {mean_std(a)} | {mean_std(b)} "
                     f"| {100 * maj:.0f} |")
            if base is not None:
                zero = [r["sweep"][0]["results"]["count:a"]["natural"]["accuracy"] for r in runs]
                frac = [(x - z) / (base - z) for x, z in zip(a, zero) if base - z > 0.05]
                cells += f" {mean_std(frac) if frac else '-'} |"
            print(cells)
    print()


def prune_study_table(out: Path) -> None:
    """The pruning study (examples/Makefile prune-study): for each fine-tune, unit,
    operation (zero / revert to the base) and saliency inputs (C_Te = 0 / 1), count:a
    without the spurious feature (C_Te = 0, the paper's O_PT) unpruned and at K = 5 and 15,
    the recovered fraction (pruned - unpruned) / (base - unpruned) at K = 15 and at the
    best K, each mean ± std [t-interval over seeds], and the prune criterion's outcome per
    seed (compare's rule on the natural set)."""
    from wrapcli.verdicts import rules as verdicts

    groups = defaultdict(list)
    for f in sorted(out.glob("*pstudy-*.json")):
        m = re.match(r"([bc]?pstudy)-(.+)-s(\d+)-(neuron|row|weight)-(zero|revert)(?:-sc(\d))?\.json$", f.name)
        if not m:
            continue
        kind, ft, seed, unit, op, sc = m.groups()
        base_eval = out / {"pstudy": f"pt-{ft.split('-')[0]}-s{seed}_eval.json", "bpstudy": "base-medium_eval.json",
                           "cpstudy": "counter_eval.json"}[kind]
        base = results(base_eval)["tasks"]["count:a"]["C_Te=0"]["accuracy"] if base_eval.exists() else None
        label = {"pstudy": "", "bpstudy": "shipped base: ", "cpstudy": "compiled: "}[kind] + ft
        groups[(label, unit, op, "natural" if sc is None else f"C_Te = {sc}")].append((results(f), base))
    if not groups:
        print(f"no pruning-study reports in {out}")
        return
    print("| fine-tune | unit | operation | saliency on | count:a C_Te=0 %, K = 0 | K = 5 | K = 15 (compiled: 5) | "
          "recovered fraction %, K = 15 (5) | recovered fraction %, best K | count:a C_Te=1 %, K = 0 → best K | "
          "prune criterion per seed |")
    print("|" + " --- |" * 11)
    for (ft, unit, op, sc), runs in sorted(groups.items()):
        def acc(r, k, setting="C_Te=0"):
            row = next((x for x in r["sweep"] if x["k"] == k), None)
            return None if row is None else row["results"]["count:a"][setting]["accuracy"]

        top = max(row["k"] for row in runs[0][0]["sweep"])
        far = 15 if top >= 15 else top  # compiled sweeps stop at K = 5
        at = {k: [acc(r, k) for r, _ in runs] for k in (0, 5, far)}
        frac15, best = [], []
        for r, base in runs:
            a0 = acc(r, 0)
            if base is None or base - a0 <= 0.05:
                continue
            frac15.append((acc(r, far) - a0) / (base - a0))
            best.append(max((acc(r, row["k"]) - a0) / (base - a0) for row in r["sweep"]))
        th = verdicts.Thresholds()
        outcomes = [verdicts.prune(r, "count:a", None, th, "")["outcome"] for r, _ in runs]
        with_feature = [max(acc(r, row["k"], "C_Te=1") for row in r["sweep"]) for r, _ in runs]
        print(f"| {ft} ({len(runs)} seeds) | {unit} | {op} | {sc} | {mean_std(at[0])} | {mean_std(at[5])} | "
              f"{mean_std(at[far])} | {mean_std(frac15, False)} | {mean_std(best, False)} | "
              f"{mean_std([acc(r, 0, 'C_Te=1') for r, _ in runs])} → {mean_std(with_feature)} | {', '.join(outcomes)} |")
    print()


def attention_table(out: Path) -> None:
    """Compiled counters (examples/Makefile compiled): the attention from the answer
    position onto a, b and BOS, without and with the spurious feature, per fine-tune."""
    runs = defaultdict(list)
    for f in [out / "counter_eval.json", *sorted(out.glob("ft-*_eval.json"))]:
        if f.exists() and "attention" in results(f):
            key = "compiled (no fine-tune)" if f.name == "counter_eval.json" else re.sub(r"-s\d+_eval\.json$", "", f.name)[3:]
            runs[key].append(results(f)["attention"])
    if not runs:
        return
    cols = [(s, t) for s in ("C_Te=0", "C_Te=1") for t in ("a", "b", "BOS")]
    print("| attention from the answer position (LR-C_Tr) | seeds | " + " | ".join(f"onto {t}, {s}" for s, t in cols) + " |")
    print("|" + " --- |" * (len(cols) + 2))
    for key, rows in runs.items():
        cells = [mean_std([r[s][0][t] for r in rows]) for s, t in cols]  # the counter's one layer and head
        print(f"| {key} | {len(rows)} | " + " | ".join(cells) + " |")
    print()


def probe_table(out: Path, prefix: str = "probe") -> None:
    groups = grouped(out, prefix)
    if not groups:
        return
    print("| probed fine-tune | layer | probe count:a | pretrained reference | random init (best of 3) | majority |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, runs in groups.items():
        for i, row in enumerate(runs[0]["layers"]):
            acc = mean_std([r["layers"][i]["accuracy"] for r in runs])
            ref = mean_std([r["layers"][i]["reference"]["accuracy"] for r in runs if "reference" in r["layers"][i]])
            rnd = mean_std([r["layers"][i]["random_init"]["accuracy"] for r in runs])
            maj = mean_std([r["layers"][i]["majority_baseline"] for r in runs])
            print(f"| {key} ({len(runs)} seeds) | {row['hook']} | {acc} | {ref} | {rnd} | {maj} |")
    print()


def eval_table(out: Path, prefix: str, title: str) -> None:
    """Every task and test setting in the ``PREFIX-*_eval.json`` reports (the further
    setups: mixing, indexer, jailbreak), mean ± std over seeds."""
    groups = defaultdict(list)
    for f in sorted(out.glob(f"{prefix}-*_eval.json")):
        groups[re.sub(r"-?s\d+_eval\.json$", "", f.name)[len(prefix) + 1 :] or "-"].append(results(f)["tasks"])
    if not groups:
        return
    cols = sorted({(t, s) for runs in groups.values() for r in runs for t, rows in r.items() for s in rows})
    print(f"| {title} | seeds | " + " | ".join(f"{t} {s}" for t, s in cols) + " |")
    print("|" + " --- |" * (len(cols) + 2))
    for key, runs in groups.items():
        cells = [mean_std([r[t][s]["accuracy"] for r in runs if s in r.get(t, {})]) for t, s in cols]
        print(f"| {key} | {len(runs)} | " + " | ".join(cells) + " |")
    print()


def audit_table(out: Path) -> None:
    path = out / "audit.json"
    if not path.exists():
        return
    print("| audited checkpoint | task | verdict | accuracy before -> after | criteria | why |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, verdicts in results(path)["verdicts"].items():
        for v in verdicts:
            crit = ", ".join(f"{c['kind']} {c['outcome']}" for c in v["criteria"])
            print(f"| {Path(name).name} | {v['task']} | {v['label']} | "
                  f"{100 * v['base']['accuracy']:.1f} -> {100 * v['fine_tuned']['accuracy']:.1f} | {crit} | {v['reason']} |")
    print()


BEGIN, END = "<!-- demo:begin -->", "<!-- demo:end -->"


def evidence(c: dict) -> str:
    """One criterion as ``kind outcome value [interval]``: probe and prune in points,
    revive as a speed-up over the fastest control."""
    if c["kind"] == "revive":
        if c.get("value") is None or not c.get("ci95"):
            return f"revive {c['outcome']}: {c['text']}"
        control = str(c.get("control", "")).removeprefix("control:").removesuffix(".safetensors")
        if c["value"] == 0:
            return f"revive {c['outcome']}: the fine-tune did not reach the threshold in every seed, {control} did"
        bound = "≥ " if c.get("lower_bound") else ""
        return (f"revive {c['outcome']} {bound}{c['value']:.1f}× [{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}] "
                f"over the fastest control ({control})")
    if c.get("ci95") is None:
        return f"{c['kind']} {c['outcome']}"
    where = (f" (K = {c['k']} {c['unit']}{'s' if c['k'] > 1 else ''})" if c["kind"] == "prune" else
             f" ({c['hook']})" if c["kind"] == "probe" and c["outcome"] != "fail" else "")
    return f"{c['kind']} {c['outcome']} {100 * c['value']:+.1f} [{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}]{where}"


def revival_lines(out: Path) -> list[str]:
    """Each revive report's steps to the threshold, per model: mean over seeds, or how many
    seeds never got there."""
    lines = []
    for f in sorted(out.glob("revive-*.json")):
        r = results(f)
        cells = []
        for m in r["models"]:
            reached = [x for x in m["steps_to_threshold"]["per_seed"] if x is not None]
            n = len(m["steps_to_threshold"]["per_seed"])
            name = m["name"].removeprefix("control:").removesuffix(".safetensors")
            name = "the fine-tune" if name == "revived" else name
            missed = n - len(reached)
            cells.append(f"{name} " + (f"{statistics.fmean(reached):.0f}" if not missed else
                                       f"never in {r['eval_steps'][-1]} ({missed} of {n} seeds)"
                                       if not reached else f"{statistics.fmean(reached):.0f} ({missed} of {n} seeds never)"))
        seeds = len(r["models"][0]["steps_to_threshold"]["per_seed"])
        lines.append(f"- {f.stem.removeprefix('revive-')} (reFT LR {r['lr']:g}, {seeds} "
                     f"seeds, threshold {100 * r['threshold']:.1f}%): " + "; ".join(cells) + ".")
    return lines


def demo_block(out: Path) -> str:
    """What `make demo` printed, as README lines: each fine-tune's count:a and count:b
    before and after, compare's verdict on count:a with its criteria and intervals, and
    the revivals' steps to threshold, naming the commit and the CPU that made the run."""
    audit = json.loads((out / "audit.json").read_text())
    env, res = audit["environment"], audit["results"]
    base = res["base"]
    lines = [BEGIN,
             f"What `make demo` printed at commit {str(env.get('git_commit'))[:12]} on {env['cpu']} "
             f"({audit['precision']}, {env['torch_threads']} thread per job; written by "
             "`python examples/summarize.py out --readme README.md`):", "",
             "| fine-tune (prior-LR-C_Tr) | count:a before → after | count:a after without / with the spurious feature "
             "| count:b after | verdict on count:a | evidence (95% interval) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, verdicts in res["verdicts"].items():
        v = next(v for v in verdicts if v["task"] == "count:a")
        ev = results(out / (Path(name).name.removesuffix(".safetensors") + "_eval.json"))["tasks"]
        b = res["behaviour"]["count:b"][name]["accuracy"]
        crit = "; ".join(evidence(c) for c in v["criteria"] if c["kind"] != "behaviour")
        label = Path(name).name.removeprefix("ft-").removesuffix("-s0.safetensors")
        lines.append(f"| {label} | {100 * v['base']['accuracy']:.1f} → {100 * v['fine_tuned']['accuracy']:.1f} "
                     f"| {100 * ev['count:a']['C_Te=0']['accuracy']:.1f} / {100 * ev['count:a']['C_Te=1']['accuracy']:.1f} "
                     f"| {100 * b:.1f} | **{v['label']}** | {crit} |")
    acc = {t: 100 * res["behaviour"][t][base]["accuracy"] for t in ("count:a", "count:b")}
    n = res["behaviour"]["count:a"][base]["n"]
    lines += ["", f"Base {Path(base).name}: count:a {acc['count:a']:.1f}%, count:b {acc['count:b']:.1f}% (n = {n}). "
              "Steps to the revival threshold (mean over seeds):", *revival_lines(out), "",
              "Every number is in `out/`; `out/audit.md` explains each criterion.", END]
    return "\n".join(lines)


def write_readme_block(out: Path, readme: Path) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{readme}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    readme.write_text(head + demo_block(out) + rest.split(END, 1)[1])


def main() -> None:
    if "--prune-study" in sys.argv:
        prune_study_table(Path(sys.argv[sys.argv.index("--prune-study") + 1]))
        return
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cpu")
    if "--readme" in sys.argv:
        write_readme_block(out, Path(sys.argv[sys.argv.index("--readme") + 1]))
        return
    pretrain_table(out)
    finetune_table(out)
    revive_table(out)
    if (out / "counter_eval.json").exists():  # compiled counters: recovered fraction against the compiled model
        base = results(out / "counter_eval.json")["tasks"]
        cells = [(t, s) for t in ("count:a", "count:b") for s in ("natural", "C_Te=0", "C_Te=1")]
        print("| model | " + " | ".join(f"{t} {s}" for t, s in cells) + " |")
        print("|" + " --- |" * (len(cells) + 1))
        print("| compiled counter (noise 0.001), no fine-tune | " + " | ".join(
            f"{100 * base[t][s]['accuracy']:.1f} (n = {base[t][s]['n']})" for t, s in cells) + " |\n")
        prune_table(out, "prune", "counter_eval.json")
        prune_table(out, "nprune", "counter_eval.json")
        attention_table(out)
    else:
        prune_table(out)
    probe_table(out)
    eval_table(out, "mix", "data mixing (prior-LR-mix)")
    eval_table(out, "ix", "indexer pretrained (prior)")
    eval_table(out, "ixft", "indexer fine-tune (prior-LR-C_Tr)")
    eval_table(out, "jb", "jailbreak pretrained")
    eval_table(out, "jbft", "jailbreak fine-tune (LR)")
    probe_table(out, "jbprobe")
    eval_table(out, "rft", "randFT fine-tune (prior-LR)")
    probe_table(out, "rftprobe")
    eval_table(out, "base", "shipped base (prior)")
    eval_table(out, "bft", "from the shipped base (LR-C_Tr)")
    if (out / "base-medium_eval.json").exists():
        prune_table(out, "bprune", "base-medium_eval.json")
    probe_table(out, "bprobe")
    audit_table(out)
    if (out / "audit.json").exists() and not (out / "counter_eval.json").exists():
        print("\n".join(demo_block(out).splitlines()[1:-1]))  # the README's demo block, without its markers


if __name__ == "__main__":
    main()
