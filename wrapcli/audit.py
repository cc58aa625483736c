"""compare: one audit of what fine-tuning changed (weights, behaviour, representations,
evidence from prune / probe / revive reports) and an explained verdict per capability.

This module gathers the numbers: it streams the weight diff, evaluates behaviour with
counts, computes linear CKA per layer, and reads evidence reports by their fields (the
checkpoint's sha256, the task, the data file's sha256), refusing evidence about another
checkpoint or task. The decision rules live in wrapcli/verdicts.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wrapcli import verdicts
from wrapcli.errors import UsageError, WrapError
from wrapcli.schema import validate
from wrapcli.verdicts import Thresholds

EVIDENCE = ("wrapcli.prune", "wrapcli.probe", "wrapcli.revive")
MIN_EVIDENCE_VERSION = 2  # results_version of the first reports with counts and intervals


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) between (n, d1) and (n, d2) representations."""
    x = x.astype(np.float64) - x.mean(0)
    y = y.astype(np.float64) - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


def load_reports(paths, shas: dict[str, str]) -> dict[str, list[dict]]:
    """Reports keyed by the checkpoint they were computed on (their first input's sha256);
    a report made on a checkpoint outside this comparison is refused."""
    by_ckpt: dict[str, list[dict]] = {name: [] for name in shas}
    owner = {sha: name for name, sha in shas.items()}
    for path in paths:
        try:
            rep = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise WrapError(f"{path}: cannot read the report ({e.strerror})") from None
        except ValueError as e:  # UnicodeDecodeError included
            raise WrapError(f"{path}: not a JSON report ({str(e)[:120]})") from None
        if not isinstance(rep, dict) or "schema" not in rep or "results" not in rep:
            raise WrapError(f"{path}: not a wrapcli report (no 'schema' and 'results')")
        schema, version = rep["schema"], rep.get("results_version", 1)
        if schema not in EVIDENCE:
            raise WrapError(f"{path}: {schema} reports carry no evidence for compare (give prune, probe or revive)")
        if not isinstance(version, int) or version < MIN_EVIDENCE_VERSION:
            raise WrapError(f"{path}: made by an older wrapcli without intervals (results version {version}); "
                            f"run {schema.split('.')[1]} again")
        problems = validate(rep)
        if problems:
            raise WrapError(f"{path}: malformed {schema} report ({problems[0]}"
                            + (f", and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ")"))
        inputs, results = rep["inputs"], rep["results"]
        sha = inputs[0]["sha256"] if inputs else None
        if sha not in owner:
            raise WrapError(f"{path}: made on a checkpoint (sha256 {str(sha)[:12]}…) that is not among those compared")
        by_ckpt[owner[sha]].append({"path": str(path), "schema": schema, "results": results,
                                    "input_shas": {i["sha256"] for i in inputs[1:]}})
    return by_ckpt


def evidence_task(rep: dict, tasks: dict[str, dict]) -> str:
    """Which of compare's capabilities (keyed by canonical task) a report is evidence for,
    read from its fields; a report about another task is refused."""
    r, kind = rep["results"], rep["schema"].split(".")[1]
    if r.get("data"):  # user data: the JSONL task compare was given, by content
        files = [t for t, info in tasks.items() if info.get("sha256")]
        same = [t for t in files if tasks[t]["sha256"] in rep["input_shas"]]
        if same:
            return same[0]
        if kind == "probe" and len(files) == 1:  # a text/label file about the one JSONL capability
            return files[0]
        raise WrapError(f"{rep['path']}: {kind} evidence on {r['data']}, which matches none of compare's "
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


def compare(*, paths, tasks=(), reports=(), th: Thresholds = Thresholds(), n=512, dtype="float32",
            device="cpu") -> dict:
    """The audit's results for checkpoints ``paths`` (the first is the base). Weights are
    streamed tensor by tensor; for behaviour, CKA and KL one model at a time is in memory
    beside the base's kept activations (float16 features, float16 answer log-probs)."""
    from wrapcli import checkpoint
    from wrapcli.adapters import resid_layers
    from wrapcli.files import sha256
    from wrapcli.adapters import layer_features

    if len(paths) < 2:
        raise WrapError("compare needs at least two checkpoints (the first is the base)")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UsageError(f"unknown dtype {dtype!r} (float32, bfloat16, float16)")
    from wrapcli.weightdiff import compare_weights

    names = [str(p) for p in paths]
    weights = [compare_weights(paths[0], p) for p in paths[1:]]  # streams; refuses mismatches first
    shas = {name: sha256(path) for name, path in zip(names, paths)}
    evidence_by = load_reports(reports, shas)  # refuse bad evidence before the forward passes
    base = checkpoint.load(paths[0], dtype=dtype, device=device)
    canon, views = {}, []
    for task in tasks:
        key, info = _canonical(task, base)
        if key in canon:
            raise UsageError(f"--task {task} is given twice")
        if info.get("file"):
            info["sha256"] = sha256(task)
        canon[key] = info
        views.append((key, _TaskView(task, paths[0], base, n)))
    for rep in (r for reps in evidence_by.values() for r in reps):
        evidence_task(rep, canon)
    behaviour = {key: {names[0]: view.score(base.model, device)} for key, view in views}
    base_lp = {key: view.log_probs(base.model, device) for key, view in views if view.records is not None}
    base_features = layer_features(base.model, views[0][1].chunks(), views[0][1].pick, device) if views else None
    depth, representations = {key: {} for key in base_lp}, {}
    for name, path in zip(names[1:], paths[1:]):
        ck = checkpoint.load(path, dtype=dtype, device=device)
        if ck.vocab != base.vocab:
            raise WrapError(f"{names[0]} and {name} have different vocabularies")
        for key, view in views:
            behaviour[key][name] = view.score(ck.model, device)
            if key in base_lp:
                depth[key][name] = kl_by_position(base_lp[key], view.log_probs(ck.model, device))
        if base_features is not None:
            other = layer_features(ck.model, views[0][1].chunks(), views[0][1].pick, device)
            representations[name] = [{"layer": layer, "hook": hook, "cka": linear_cka(x, y)}
                                      for (layer, hook), x, y in zip(resid_layers(len(other) - 1), base_features, other)]
        del ck
    verdict_by = {}
    for name in names[1:]:
        per_task = {key: [] for key in canon}
        for rep in evidence_by[name]:
            key = evidence_task(rep, canon)
            per_task[key].append(gather(rep, key, behaviour[key][names[0]]["accuracy"], th))
        verdict_by[name] = [verdicts.verdict(key, behaviour[key][names[0]], behaviour[key][name], per_task[key], th)
                            for key in canon]
    return {
        "checkpoints": [{"path": n_, "sha256": shas[n_]} for n_ in names],
        "base": names[0],
        "thresholds": th.to_dict(),
        "weights": weights,
        "behaviour": behaviour,
        "depth": depth,
        "representations": representations,
        "evidence": {k: [r["path"] for r in v] for k, v in evidence_by.items()},
        "verdicts": verdict_by,
        "device": device,
    }


def _canonical(task: str, ck) -> tuple[str, dict]:
    """The key evidence is matched on: the component (count:a) or the JSONL path."""
    if task.endswith(".jsonl"):
        return task, {"file": True}
    from wrapcli.tasks.checks import single_component, task_for

    return str(single_component(task_for(ck, task), "compare", task)), {}


class _TaskView:
    """One capability's examples, fixed from the base checkpoint: a built-in task's natural
    evaluation set, or a prompt/answer JSONL file tokenized by the base's tokenizer."""

    def __init__(self, task: str, base_path, base, n: int):
        self.records = None
        if task.endswith(".jsonl"):
            from wrapcli.adapters import last_positions
            from wrapcli.userdata import text_data

            self.records = text_data(task, base_path, base.model, 0)
            self.pick = last_positions(1)
            return
        from wrapcli.evaluation import EVAL_SEED
        from wrapcli.tasks.checks import task_for
        from wrapcli.tasks.sequences import answer_pos, eval_batch

        self.spec = task_for(base, task).replace(seed=EVAL_SEED)
        self.comp = self.spec.eval_components()[0]
        self.n = n
        tokens = eval_batch(self.spec, self.comp, n, None).tokens
        self.tokens = tokens[:, : answer_pos(tokens) + 1]  # prompts: up to <ans>
        self.pick = lambda h, mask: h[:, -1]

    def score(self, model, device) -> dict:
        """Accuracy with its count and interval (token accuracy for JSONL)."""
        if self.records is not None:
            from wrapcli.userdata import score_text

            r = score_text(model, self.records, device)
            return {"accuracy": r["token_accuracy"], "n": r["n_scored_tokens"], "ci95": r["token_accuracy_ci95"],
                    "metric": "token_accuracy"}
        from wrapcli.evaluation import evaluate

        r = evaluate(model, self.spec.fixed(self.comp), self.n, device, ("natural",))[str(self.comp)]["natural"]
        return {"accuracy": r["accuracy"], "n": r["n"], "ci95": r["ci95"], "metric": "accuracy",
                "majority_baseline": r["majority_baseline"]}

    def chunks(self, size: int = 32):
        """``(input_ids, attention_mask)`` batches for the CKA features."""
        if self.records is None:
            from wrapcli.adapters import token_chunks

            yield from token_chunks(self.tokens)
            return
        for i in range(0, len(self.records.examples), size):
            b = self.records.collate(list(range(i, min(i + size, len(self.records.examples)))), "cpu")
            yield b["input_ids"], b["attention_mask"]

    def log_probs(self, model, device, batch_size: int = 16):
        """Next-token log-probabilities (float16, (N, vocab)) at every answer token of the
        records, and each one's place in its answer (N,)."""
        import torch

        from wrapcli.userdata import answer_logits

        lps, places = [], []
        with torch.inference_mode():
            for start in range(0, len(self.records.examples), batch_size):
                idx = list(range(start, min(start + batch_size, len(self.records.examples))))
                logits, _, _, place = answer_logits(model, self.records.collate(idx, device))
                lps.append(torch.log_softmax(logits.float(), -1).half().cpu())
                places.append(place.cpu())
        return torch.cat(lps), torch.cat(places)


def kl_by_position(base, other) -> list[dict]:
    """How deep a change goes (Qi et al. 2024: a fine-tune's effect often sits in the first
    few answer tokens): mean KL(base || other) of the next-token distributions at answer
    token 1, 2, ... over the records, teacher-forced on the expected answer. ``base`` and
    ``other`` are ``_TaskView.log_probs`` of the same records."""
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
                fmt = "{:.2f}x" if c["kind"] == "revive" else "{:+.3f}"  # a ratio; the others are differences
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
                     "at or below it, and is unclear otherwise (wrapcli/verdicts.py). Intervals are 95%; "
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
        lines += [f"| {k} | {v['relative_change']:.4f} | {v['n_changed']}/{v['n_tensors']} |" for k, v in w["module_kinds"].items()]
        top = sorted(w["tensors"].items(), key=lambda kv: -kv[1]["relative_change"])[:10]
        lines += ["", "| most changed tensor | relative change | rank of ΔW | energy in top 1 / 4 / 16 |", "| --- | --- | --- | --- |"]
        for name, st in top:
            e = st.get("energy_top")
            energy = " / ".join(f"{e[k]:.2f}" for k in ("1", "4", "16")) if e else "-"
            lines.append(f"| `{name}` | {st['relative_change']:.4f} | {st.get('rank', '-')} | {energy} |")
    for name, rows in result["representations"].items():
        lines += ["", f"## Representations: linear CKA, base vs `{name}`", "", "| layer | CKA |", "| --- | --- |"]
        lines += [f"| {r['hook']} | {r['cka']:.3f} |" for r in rows]
    return "\n".join(lines) + "\n"
