"""In-context examples as an attack (Lynch et al. 2024, "Eight methods to evaluate robust
unlearning in LLMs"): a few solved records of the same kind written before each question
often bring back an answer a fine-tune taught the model to withhold, with no training.

Each scored record gets ``k`` demonstrations drawn, without replacement, from another file
of prompt/answer records (a multiple-choice pool shows its correct choice), never one with
the scored record's own prompt, in an order seeded by (``seed``, the record's index), so
every K and every model sees the same demonstrations for the same record. A demonstration
is its prompt followed by its answer; demonstrations are separated from each other and
from the question by ``SEPARATOR``, lm-evaluation-harness's default few-shot delimiter.
"""

from __future__ import annotations

import numpy as np

from wrapcli.core.errors import UsageError

SEPARATOR = "\n\n"


def parse_shots(text: str) -> list[int]:
    """``--shots 0,3,8``: the numbers of demonstrations, strictly increasing, >= 0."""
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--shots takes comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 0 or any(b <= a for a, b in zip(ks, ks[1:])):
        raise UsageError(f"--shots takes strictly increasing integers >= 0 (e.g. 0,3,8), got {text!r}")
    return ks


def demonstration(rec: dict) -> str:
    """A solved record as the model reads it: prompt and answer (the correct choice)."""
    answer = rec["choices"][rec["answer"]] if "choices" in rec else rec["answer"]
    return rec["prompt"] + answer


def with_shots(records: list[dict], pool: list[dict], k: int, seed: int, pool_name: str = "--shots-from") -> list[dict]:
    """``records`` with ``k`` demonstrations from ``pool`` written before each prompt."""
    if k == 0:
        return [dict(r) for r in records]
    out = []
    for i, rec in enumerate(records):
        candidates = [p for p in pool if p["prompt"] != rec["prompt"]]
        if len(candidates) < k:
            raise UsageError(f"{pool_name}: {len(candidates)} records other than the scored one, fewer than "
                             f"--shots {k}")
        picked = np.random.default_rng([seed, i]).choice(len(candidates), size=k, replace=False)
        prefix = "".join(demonstration(candidates[j]) + SEPARATOR for j in picked)
        out.append({**rec, "prompt": prefix + rec["prompt"]})
    return out
