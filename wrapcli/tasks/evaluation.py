"""Accuracy of a model on the fixed evaluation sets of a task (docs/protocol.md, "Fine-tuning":
report accuracy on each operand with and without the spurious feature).

A prediction is the argmax over the whole vocabulary of the logits at ``<ans>`` — no
restriction to plausible answers, so a model that emits a wrong kind of token is wrong.
Every accuracy carries its count and 95% Wilson interval (wrapcli/core/stats.py). Next to
every accuracy we report the majority baseline: the accuracy of always giving
the evaluation set's most common answer, which is far from zero for short texts.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from wrapcli.core.stats import proportion
from wrapcli.tasks import vocab
from wrapcli.tasks.sequences import Batch, answer_pos, eval_batch
from wrapcli.tasks.spec import TaskSpec

SETTINGS = {"natural": None, "C_Te=0": False, "C_Te=1": True}
# Evaluation sets are drawn from this seed unless asked otherwise, whatever seed a model
# was trained with, so every checkpoint of a study is scored on the same examples.
EVAL_SEED = 0


def predict(model, tokens: np.ndarray, device="cpu", chunk: int = 512, precision: str = "fp32") -> np.ndarray:
    """Argmax token at the ``<ans>`` position for each row of ``tokens`` (n, T), in fp32 or
    under bf16 autocast. The kernels are the training ones (wrapcli/core/kernels.py): GPT-2's
    activation as one fused kernel (with the six-operation original, evaluation spent
    more time in it than in the matrix products), and eager attention for bf16 on CPU."""
    import torch

    from wrapcli.core.kernels import autocast, fast_kernels

    ans = answer_pos(tokens)
    out = []
    with torch.inference_mode(), fast_kernels(model, str(device), precision):
        for i in range(0, len(tokens), chunk):
            x = torch.as_tensor(tokens[i : i + chunk, : ans + 1], device=device)
            with autocast(str(device), precision):
                logits = model(input_ids=x, logits_to_keep=1).logits[:, -1]
            out.append(logits.argmax(-1).cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def score(model, batch: Batch, device="cpu", conjugate: dict | None = None, precision: str = "fp32",
          keep_correct: bool = False) -> dict:
    """Accuracy, majority baseline and per-answer breakdown on one batch; with a
    ``conjugate`` relabelling the model sees s(prompt) and its answer is mapped back;
    with ``keep_correct`` each example's outcome too (for paired comparisons)."""
    if conjugate:
        from wrapcli.tasks.conjugate import relabel, unmap

        pred = unmap(predict(model, relabel(batch, conjugate).tokens, device, precision=precision), conjugate)
    else:
        pred = predict(model, batch.tokens, device, precision=precision)
    correct = pred == batch.answer
    per_answer = {}
    for a in np.unique(batch.answer):
        rows = batch.answer == a
        per_answer[vocab.TOKENS[a]] = proportion(int(correct[rows].sum()), int(rows.sum()))
    majority = Counter(batch.answer.tolist()).most_common(1)[0][1] / len(batch.answer)
    out = {
        **proportion(int(correct.sum()), len(correct)),
        "majority_baseline": float(majority),
        "per_answer": per_answer,
    }
    return {**out, "correct": correct.tolist()} if keep_correct else out


def check_eval_memory(option: str, n: int, spec: TaskSpec) -> None:
    """Refuse an evaluation size whose fixed sets (tokens, texts and answers, three
    settings, cached) would not fit in memory, before generating any."""
    from wrapcli.core.runtime import check_memory
    from wrapcli.tasks.sequences import seq_len

    per_example = 16 * seq_len(spec.text_len) + 4 * spec.text_len + 512  # ids, text, answers, Python overhead
    check_memory(option, n, 3 * n * per_example * max(1, len(spec.eval_components())), "the evaluation sets")


def evaluate(model, spec: TaskSpec, n: int, device="cpu", settings=tuple(SETTINGS),
             conjugate: dict | None = None, precision: str = "fp32") -> dict:
    """``{component: {setting: score}}`` for every (family, operand) the spec covers.
    The C_Te settings apply to the families that have a spurious feature (count, index).
    ``precision`` is resolved (fp32 or bf16), never ``auto``."""
    out = {}
    for comp in spec.eval_components():
        rows = {}
        for name in settings:
            if SETTINGS[name] is not None and comp.family not in ("count", "index"):
                continue
            rows[name] = score(model, eval_batch(spec, comp, n, SETTINGS[name]), device, conjugate, precision)
        out[str(comp)] = rows
    return out
