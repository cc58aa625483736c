"""compare: one audit of what fine-tuning changed (weights, behaviour, representations,
evidence from prune / probe / revive reports) and an explained verdict per capability.

The verdict, for each checkpoint after the first (the base) and each capability task:
- ``intact``: accuracy did not fall by ``drop`` or more from the base;
- ``wrapped``: it fell, and some evidence says the capability is still there: still
  linearly decodable (a probe layer >= majority + ``probe_margin``), restored by pruning
  (accuracy at some K above both the unpruned model's and the majority baseline by
  ``prune_gain`` or more), or revived at least
  ``revive_speedup`` times faster than the best control;
- ``removed``: it fell and the evidence that was given says none of these;
- ``suppressed``: it fell and no prune / probe / revive report was given for it.
Every clause of the explanation names the number behind it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wrapcli.errors import WrapError

LABELS = ("intact", "wrapped", "removed", "suppressed")


@dataclass(frozen=True)
class Thresholds:
    drop: float = 0.2  # accuracy fall (absolute) that counts as suppressed
    probe_margin: float = 0.2  # probe accuracy above its majority baseline that counts as decodable
    prune_gain: float = 0.1  # accuracy gain from pruning that counts as restored
    revive_speedup: float = 2.0  # revival speed-up over the best control that counts as revived

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                raise WrapError(f"threshold {name} must be > 0, got {value}")


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
            rep = json.loads(Path(path).read_text())
            schema, inputs = rep["schema"], rep["inputs"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise WrapError(f"{path}: not a wrapcli report ({e})") from None
        if schema not in ("wrapcli.prune", "wrapcli.probe", "wrapcli.revive"):
            raise WrapError(f"{path}: {schema} reports carry no evidence for compare (give prune, probe or revive)")
        sha = inputs[0]["sha256"] if inputs else None
        if sha not in owner:
            raise WrapError(f"{path}: made on a checkpoint (sha256 {str(sha)[:12]}…) that is not among those compared")
        by_ckpt[owner[sha]].append({"path": str(path), "schema": schema, "results": rep["results"]})
    return by_ckpt


def evidence(task: str, reports: list[dict], th: Thresholds) -> list[dict]:
    """Clauses ``{"kind", "positive", "text"}`` from the reports about ``task``."""
    out = []
    for rep in reports:
        r = rep["results"]
        if rep["schema"] == "wrapcli.probe" and r["target"].split(" ")[0] == task:
            good = [l["layer"] for l in r["layers"] if l["accuracy"] >= l["majority_baseline"] + th.probe_margin]
            best = max(r["layers"], key=lambda l: l["accuracy"])
            text = (f"still linearly decodable at {_span(good)} (best {best['layer']}: {best['accuracy']:.0%} vs "
                    f"majority {best['majority_baseline']:.0%})" if good else
                    f"not linearly decodable (best probe {best['accuracy']:.0%} vs majority {best['majority_baseline']:.0%})")
            out.append({"kind": "probe", "positive": bool(good), "text": text, "source": rep["path"]})
        elif rep["schema"] == "wrapcli.prune" and r["task"] == task:
            rows = [(row["k"], row["results"][task]["natural"]) for row in r["sweep"]]
            accs = [(k, s["accuracy"]) for k, s in rows]
            k0 = dict(accs).get(0, accs[0][1])
            majority = rows[0][1]["majority_baseline"]
            k_best, best = max(accs, key=lambda x: x[1])
            # restored = better than both the unpruned model and always giving the majority answer
            gain = best - max(k0, majority)
            positive = k_best > 0 and gain >= th.prune_gain
            text = (f"restored by pruning {k_best} {r['unit']}s ({k0:.0%} -> {best:.0%}, majority {majority:.0%})"
                    if positive else
                    f"not restored by pruning up to {accs[-1][0]} {r['unit']}s (best {best:.0%} at K={k_best}, "
                    f"unpruned {k0:.0%}, majority {majority:.0%})")
            out.append({"kind": "prune", "positive": positive, "text": text, "source": rep["path"]})
        elif rep["schema"] == "wrapcli.revive" and r["task"] == task:
            s = r["speedup"]
            positive = s["value"] is not None and s["value"] >= th.revive_speedup
            out.append({"kind": "revive", "positive": positive, "text": s["verdict"], "source": rep["path"]})
    return out


def verdict(task: str, base_acc: float, acc: float, clauses: list[dict], th: Thresholds) -> dict:
    fell = acc <= base_acc - th.drop
    if not fell:
        label, text = "intact", f"{task}: not suppressed ({base_acc:.0%} -> {acc:.0%})"
    else:
        head = f"{task}: behaviourally suppressed ({base_acc:.0%} -> {acc:.0%})"
        if any(c["positive"] for c in clauses):
            label = "wrapped"
        elif clauses:
            label = "removed"
        else:
            label = "suppressed"
        tail = {"wrapped": "wrapped, not removed", "removed": "removed, as far as the evidence shows",
                "suppressed": "no prune / probe / revive evidence given"}[label]
        text = "; ".join([head] + [c["text"] for c in clauses]) + f" -> {tail}"
    return {"task": task, "label": label, "base_accuracy": base_acc, "accuracy": acc,
            "evidence": clauses, "text": text}


def _span(layers: list[str]) -> str:
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return f"layers {layers[0]}–{layers[-1]}" if layers else "no layer"


def compare(*, paths, tasks=(), reports=(), th: Thresholds = Thresholds(), n=512, dtype="float32",
            device="cpu") -> dict:
    """The audit's results for checkpoints ``paths`` (the first is the base)."""
    from wrapcli import checkpoint
    from wrapcli.weightdiff import compare_weights

    if len(paths) < 2:
        raise WrapError("compare needs at least two checkpoints (the first is the base)")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise WrapError(f"unknown dtype {dtype!r} (float32, bfloat16, float16)")
    names = [str(p) for p in paths]
    weights = [compare_weights(paths[0], p) for p in paths[1:]]  # streams; refuses mismatches first
    cks = [checkpoint.load(p, dtype=dtype, device=device) for p in paths]
    if any(ck.vocab != cks[0].vocab for ck in cks):
        raise WrapError(f"{names[0]} and another checkpoint have different vocabularies")
    shas = {name: ck.sha256 for name, ck in zip(names, cks)}
    evidence_by = load_reports(reports, shas)
    behaviour, inputs = {}, None
    for task in tasks:
        scores, task_inputs = _behaviour(task, paths, cks, n, device)
        behaviour[task] = dict(zip(names, scores))
        inputs = inputs or task_inputs
    representations = {}
    if inputs is not None:
        from wrapcli.probing import layer_features

        chunks, pick = inputs
        base = layer_features(cks[0].model, chunks(), pick, device)
        for name, ck in zip(names[1:], cks[1:]):
            other = layer_features(ck.model, chunks(), pick, device)
            representations[name] = [{"layer": f"B{i}", "cka": linear_cka(x, y)} for i, (x, y) in enumerate(zip(base, other))]
    verdicts = {}
    for name in names[1:]:
        verdicts[name] = [
            verdict(task, behaviour[task][names[0]], behaviour[task][name],
                    evidence(task, evidence_by[name], th), th)
            for task in tasks
        ]
    return {
        "checkpoints": [{"path": n_, "sha256": shas[n_]} for n_ in names],
        "base": names[0],
        "thresholds": asdict(th),
        "weights": weights,
        "behaviour": behaviour,
        "representations": representations,
        "evidence": {k: [r["path"] for r in v] for k, v in evidence_by.items()},
        "verdicts": verdicts,
        "device": device,
    }


def _behaviour(task: str, paths, cks, n: int, device):
    """Accuracy of every checkpoint on one task, and the inputs CKA uses: a built-in task
    spec (natural evaluation set) or a prompt/answer JSONL file (token accuracy)."""
    if task.endswith(".jsonl"):
        from wrapcli.probing import last_positions
        from wrapcli.userdata import score_text, text_data

        sets = [text_data(task, p, ck.model, 0) for p, ck in zip(paths, cks)]
        scores = [score_text(ck.model, s, device)["token_accuracy"] for ck, s in zip(cks, sets)]

        def chunks(size=32):
            for i in range(0, len(sets[0].examples), size):
                b = sets[0].collate(list(range(i, min(i + size, len(sets[0].examples)))), "cpu")
                yield b["input_ids"], b["attention_mask"]

        return scores, (chunks, last_positions(1))
    from wrapcli.evaluation import EVAL_SEED, evaluate
    from wrapcli.probing import token_chunks
    from wrapcli.tasks.checks import task_for
    from wrapcli.tasks.sequences import eval_batch

    specs = [task_for(ck, task).replace(seed=EVAL_SEED) for ck in cks]
    comps = specs[0].eval_components()
    if len(comps) != 1:
        raise WrapError(f"compare needs tasks with a fixed operand (e.g. count:a), got {task!r}")
    scores = [evaluate(ck.model, s, n, device, ("natural",))[str(comps[0])]["natural"]["accuracy"]
              for ck, s in zip(cks, specs)]
    tokens = eval_batch(specs[0], comps[0], n, None).tokens
    tokens = tokens[:, : tokens.shape[1] - 2]  # up to <ans>
    return scores, (lambda: token_chunks(tokens), lambda h, mask: h[:, -1])


def markdown(result: dict) -> str:
    """A readable audit: verdicts first, then the tables behind them."""
    lines = ["# wrapcli audit", "", f"Base: `{result['base']}`", ""]
    for c in result["checkpoints"]:
        lines.append(f"- `{c['path']}` sha256 `{c['sha256'][:16]}…`")
    lines += ["", "## Verdicts", ""]
    for name, vs in result["verdicts"].items():
        for v in vs:
            lines.append(f"- **{v['label']}** — `{name}`: {v['text']}")
    if not any(result["verdicts"].values()):
        lines.append("- no capability tasks given (`--task`): weights only")
    if result["behaviour"]:
        names = [c["path"] for c in result["checkpoints"]]
        lines += ["", "## Behaviour (accuracy)", "", "| task | " + " | ".join(f"`{n}`" for n in names) + " |",
                  "|" + " --- |" * (len(names) + 1)]
        for task, scores in result["behaviour"].items():
            lines.append(f"| {task} | " + " | ".join(f"{scores[n]:.1%}" for n in names) + " |")
    for w in result["weights"]:
        lines += ["", f"## Weights: `{w['a']}` → `{w['b']}`", "", "| layer | relative change | tensors changed |",
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
        lines += [f"| {r['layer']} | {r['cka']:.3f} |" for r in rows]
    return "\n".join(lines) + "\n"
