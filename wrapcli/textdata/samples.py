"""Per-record samples in lm-evaluation-harness's own format (``eval --samples FILE
--samples-format lm-eval``), so that a wrapcli run can be diffed against an lm-eval run
item by item: one JSON line per document with lm-eval's ``SampleResult`` keys
(lm_eval/result_schema.py) written as its EvaluationTracker writes them:

- ``doc_id``, ``doc`` (the lm-eval document, or the wrapcli record as read), ``target``
  (as a string);
- ``arguments``: ``{"gen_args_I": {"arg_0": context, "arg_1": continuation}}``, one per
  choice (one for a prompt/answer record);
- ``resps`` / ``filtered_resps``: per request ``[log-likelihood, is_greedy]`` as strings
  (lm-eval sanitizes them so), ``resps`` nested once more (one repeat);
- ``filter`` ``none``; ``metrics`` and their values: ``acc`` and ``acc_norm`` for multiple
  choice, ``perplexity`` (the log-likelihood, which lm-eval aggregates) and ``acc`` for a
  prompt/answer record;
- ``doc_hash``, ``prompt_hash``, ``target_hash``: sha256 of the document as indented JSON,
  of the context and of the target string, as lm-eval computes them.
"""

from __future__ import annotations

import hashlib
import json


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def lm_eval_line(doc_id: int, rec: dict, result: dict) -> dict:
    """One sample from a record and its scores (wrapcli/textdata/textscore.py
    ``record_results``)."""
    meta = rec.get("lm_eval") or {}
    doc = meta["doc"] if "doc" in meta else {k: v for k, v in rec.items() if k != "lm_eval"}
    target = meta.get("target", rec["answer"])
    if "choices" in rec:
        pairs = [(rec["prompt"], c) for c in rec["choices"]]
        responses = [[repr(float(ll)), str(bool(g))] for ll, g in zip(result["loglikelihoods"], result["greedy"])]
        metrics = {"acc": float(result["correct"]), "acc_norm": float(result["correct_norm"])}
    else:
        pairs = [(rec["prompt"], rec["answer"])]
        greedy = bool(result["correct"])
        responses = [[repr(-float(result["loss_sum"])), str(greedy)]]
        metrics = {"perplexity": -float(result["loss_sum"]), "acc": float(greedy)}
    line = {
        "doc_id": meta.get("doc_id", doc_id),
        "doc": doc,
        "target": str(target),
        "arguments": {f"gen_args_{i}": {"arg_0": ctx, "arg_1": cont} for i, (ctx, cont) in enumerate(pairs)},
        "resps": [[r] for r in responses],
        "filtered_resps": responses,
        "filter": "none",
        "metrics": list(metrics),
        "doc_hash": _hash(json.dumps(doc, indent=2, default=str, ensure_ascii=False)),
        "prompt_hash": _hash(pairs[0][0]),
        "target_hash": _hash(str(target)),
    }
    line.update(metrics)
    return line
