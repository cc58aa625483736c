"""compare's measures: linear CKA per layer, the KL depth of a change, an evidence
report's task (matched by its fields: the checkpoint's sha256, the task, the data file's
sha256) and its criterion, and the readable audit. Running the audit over checkpoints is
wrapcli/runs/compare.py; the decision rules live in wrapcli/verdicts/rules.py.
"""

from __future__ import annotations

import numpy as np

from wrapcli.core.errors import WrapError
from wrapcli.verdicts import rules as verdicts
from wrapcli.verdicts.rules import Thresholds


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) between (n, d1) and (n, d2) representations."""
    x = x.astype(np.float64) - x.mean(0)
    y = y.astype(np.float64) - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


def evidence_task(rep: dict, tasks: dict[str, dict]) -> str:
    """Which of compare's capabilities (keyed by canonical task) a report is evidence for,
    read from its fields; a report about another task is refused."""
    r, kind = rep["results"], rep["schema"].split(".")[1]
    lens_only = kind == "probe" and r.get("lens") and not r.get("layers")
    if r.get("data") or lens_only:  # user data: the JSONL task compare was given, by content
        files = [t for t, info in tasks.items() if info.get("sha256")]
        same = [t for t in files if tasks[t]["sha256"] in rep["input_shas"]]
        if same:
            return same[0]
        if kind == "probe" and len(files) == 1:  # a text/label file about the one JSONL capability
            return files[0]
        raise WrapError(f"{rep['path']}: {kind} evidence on {r['data'] or r['lens']['records']}, which matches none of compare's "
                        f"JSONL --task files by content" + (" (probe: give exactly one JSONL --task)" if kind == "probe" else ""))
    key = r.get("target_task") if kind == "probe" else r.get("task")
    if key not in tasks:
        raise WrapError(f"{rep['path']}: {kind} evidence about {key}, but compare was given "
                        f"--task {', '.join(tasks) or '(none)'}")
    return key


def gather(rep: dict, task: str, base_accuracy: float | None, th: Thresholds) -> dict:
    kind = rep["schema"].split(".")[1]
    if kind == "probe":
        return verdicts.probe(rep["results"], th, rep["path"])
    if kind == "prune":
        key = "data" if rep["results"].get("data") else task
        return verdicts.prune(rep["results"], key, base_accuracy, th, rep["path"])
    return verdicts.revive(rep["results"], th, rep["path"])


def cka_by_layer(base_features: list, other_features: list) -> list[dict]:
    """Linear CKA of two models' features at every residual-stream point (``resid_layers``
    order: the embedding, then each block)."""
    from wrapcli.models.adapters import resid_layers

    return [{"layer": layer, "hook": hook, "cka": linear_cka(x, y)}
            for (layer, hook), x, y in zip(resid_layers(len(other_features) - 1), base_features, other_features)]


def verdicts_by_checkpoint(names: list[str], canon: dict, evidence_by: dict, behaviour: dict, th: Thresholds,
                           views: dict[str, str] | None = None, attacks: dict | None = None) -> dict:
    """For every fine-tuned checkpoint (``names[1:]``; ``names[0]`` is the base), one
    verdict per capability in ``canon`` from its behaviour and its evidence reports;
    ``views`` maps a free-form task to the multiple-choice task of the same facts, whose
    accuracy over chance is one more criterion of the free-form task's verdict; ``attacks``
    holds each checkpoint's attack criteria per task, judged from eval reports by the run."""
    out = {}
    for name in names[1:]:
        per_task = {key: [] for key in canon}
        for rep in evidence_by[name]:
            if rep["schema"] in ("wrapcli.eval", "wrapcli.ablate") or (rep["schema"] == "wrapcli.probe"
                                                                       and not rep["results"]["layers"]):
                continue  # an attack's report or a lens-only probe: its criterion comes in ``attacks``
            key = evidence_task(rep, canon)
            per_task[key].append(gather(rep, key, behaviour[key][names[0]]["accuracy"], th))
        for key, crits in ((attacks or {}).get(name) or {}).items():
            per_task[key] += crits
        for free, mc in (views or {}).items():
            per_task[free].append(verdicts.view(behaviour[mc][name], th, mc))
        out[name] = [verdicts.verdict(key, behaviour[key][names[0]], behaviour[key][name], per_task[key], th)
                     for key in canon]
    return out


def kl_by_position(base, other) -> list[dict]:
    """How deep a change goes (Qi et al. 2024: a fine-tune's effect often sits in the first
    few answer tokens): mean KL(base || other) of the next-token distributions at answer
    token 1, 2, ... over the records, teacher-forced on the expected answer. ``base`` and
    ``other`` are ``TaskView.log_probs`` (wrapcli/runs/compare.py) of the same records."""
    (la, place), (lb, _) = base, other
    la, lb = la.float(), lb.float()
    kl = (la.exp() * (la - lb)).sum(-1)  # (N,)
    out = []
    for k in sorted(set(place.tolist())):
        m = place == k
        out.append({"position": k + 1, "kl": float(kl[m].mean()), "n": int(m.sum())})
    return out


def markdown(result: dict) -> str:
    """A readable audit: verdicts first, then the tables behind them."""
    lines = ["# wrapcli audit", "", f"Base: `{result['base']}`", ""]
    for c in result["checkpoints"]:
        lines.append(f"- `{c['path']}` sha256 `{c['sha256'][:16]}…`")
    lines += ["", "## Verdicts", ""]
    th = result["thresholds"]
    for name, vs in result["verdicts"].items():
        for v in vs:
            lines += [f"### **{v['label']}** — `{name}`, {v['task']}", "", f"{v['reason']}.", ""]
            lines += ["| criterion | statistic | value | interval | threshold | outcome | source |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for c in v["criteria"]:
                # the speed-up is a ratio; relearning (which has a floor) and the others are differences
                fmt = "{:.2f}x" if c["kind"] == "revive" and "floor" not in c else "{:+.3f}"
                value = "-" if c["value"] is None else fmt.format(c["value"])
                ci = "-" if c["ci95"] is None else f"[{fmt.format(c['ci95'][0])}, {fmt.format(c['ci95'][1])}]"
                thr = "-" if c["threshold"] is None else f"{c['threshold']:g}"
                lines.append(f"| {c['kind']} | {c['statistic']} | {value} | {ci} | {thr} | **{c['outcome']}** | "
                             f"{'`' + c['source'] + '`' if c['source'] else '-'} |")
            lines.append("")
            lines += [f"- {c['kind']}: {c['text']}" for c in v["criteria"]]
            if v["settle"]:
                lines += ["", "To settle it: " + "; ".join(v["settle"]) + "."]
            lines.append("")
    if not any(result["verdicts"].values()):
        lines.append("- no capability tasks given (`--task`): weights only")
    else:
        lines.append(f"Thresholds: {', '.join(f'{k} {v:g}' for k, v in th.items())}. "
                     "A criterion passes when its whole interval lies above its threshold, fails when it lies "
                     "at or below it, and is unclear otherwise (wrapcli/verdicts/rules.py). Intervals are 95%; "
                     "probe and prune intervals are widened (Bonferroni) over the layers or K they choose from.")
    if result["behaviour"]:
        names = [c["path"] for c in result["checkpoints"]]
        lines += ["", "## Behaviour (accuracy, 95% interval, n)", "",
                  "| task | " + " | ".join(f"`{n}`" for n in names) + " |", "|" + " --- |" * (len(names) + 1)]
        for task, scores in result["behaviour"].items():
            lines.append(f"| {task} | " + " | ".join(
                f"{scores[n]['accuracy']:.1%} [{scores[n]['ci95'][0]:.1%}, {scores[n]['ci95'][1]:.1%}], "
                f"n = {scores[n]['n']}" for n in names) + " |")
    for task, per in result["depth"].items():
        for name, rows in per.items():
            lines += ["", f"## How deep the change goes: `{name}` on {task}", "",
                      "Mean KL(base ‖ fine-tuned) of the next-token distribution at each answer token "
                      "(teacher-forced), over the records that have that many answer tokens.", "",
                      "| answer token | KL (nats) | records |", "| --- | --- | --- |"]
            lines += [f"| {r['position']} | {r['kl']:.4f} | {r['n']} |" for r in rows]
    for w in result["weights"]:
        lines += ["", f"## Weights: `{w['a']}` → `{w['b']}`", "", f"L2 distance of all weights: {w['l2_distance']:.4g}", "",
                  "| layer | relative change | tensors changed |",
                  "| --- | --- | --- |"]
        lines += [f"| {k} | {v['relative_change']:.4f} | {v['n_changed']}/{v['n_tensors']} |" for k, v in w["layers"].items()]
        lines += ["", "| module kind | relative change | tensors changed |", "| --- | --- | --- |"]
        lines += [f"| {k} | {v['relative_change']:.4f} | {v['n_changed']}/{v['n_tensors']} |"
                  for k, v in w["module_kinds"].items()]
        top = sorted(w["tensors"].items(), key=lambda kv: -kv[1]["relative_change"])[:10]
        lines += [
            "",
            "| most changed tensor | relative change | rank of ΔW | energy in top 1 / 4 / 16 |",
            "| --- | --- | --- | --- |",
        ]
        for name, st in top:
            e = st.get("energy_top")
            energy = " / ".join(f"{e[k]:.2f}" for k in ("1", "4", "16")) if e else "-"
            lines.append(f"| `{name}` | {st['relative_change']:.4f} | {st.get('rank', '-')} | {energy} |")
    for name, rows in result["representations"].items():
        lines += ["", f"## Representations: linear CKA, base vs `{name}`", "", "| layer | CKA |", "| --- | --- |"]
        lines += [f"| {r['hook']} | {r['cka']:.3f} |" for r in rows]
    return "\n".join(lines) + "\n"
