"""The logit lens (nostalgebraist 2020; used on unlearned models by Łucki et al. 2024):
read the answer out of every residual-stream point through the model's own final norm and
unembedding, with nothing fitted, so nothing can overfit. A fine-tune that suppresses an
answer only near the output leaves it decodable in the middle blocks.

For a prompt/answer record the lens reads, at the last prompt position, the rank of the
answer's first token among the whole vocabulary (0 = the top token; the record counts as
answered there when it is); for a multiple-choice record, which choice's first token has
the highest logit (the correct one: answered; choices that share a first token cannot be
told apart by it, and the first of them wins, as with ties elsewhere). Points follow
``resid_layers``: the embedding output, then each block's output; the last one's reading
is the model's own next-token prediction.
"""

from __future__ import annotations

from wrapcli.core.stats import wilson


def first_answer(labels: list[int], ignore: int) -> int:
    """Index of the first scored (answer) token of an example."""
    return next(i for i, label in enumerate(labels) if label != ignore)


def lens_readings(adapter, data, device="cpu", batch_size: int = 16, ignore: int = -100) -> list[list[dict]]:
    """For every residual-stream point, one ``{"rank", "correct"}`` per record of ``data``
    (wrapcli/textdata/userdata.py TextData of prompt/answer or multiple-choice records)."""
    import torch

    groups = ([list(c.rows) for c in data.choices] if data.choices is not None
              else [[i] for i in range(len(data.examples))])
    answers = [c.answer for c in data.choices] if data.choices is not None else [0] * len(groups)
    out: list[list[dict]] = []
    for start in range(0, len(groups), batch_size):
        chunk = list(range(start, min(start + batch_size, len(groups))))
        lead = [groups[g][answers[g]] for g in chunk]  # the row whose prompt the lens reads
        batch = data.collate(lead, device)
        pos = torch.tensor([first_answer(data.examples[r][1], ignore) - 1 for r in lead], device=device)
        targets = [[data.examples[r][0][first_answer(data.examples[r][1], ignore)] for r in groups[g]] for g in chunk]
        stream = adapter.residual_stream(batch["input_ids"], batch["attention_mask"])
        rows = torch.arange(len(chunk), device=device)
        for point, hidden in enumerate(stream):
            with torch.inference_mode():
                logits = adapter.decode(hidden[rows, pos]).float()  # (B, vocab)
            if len(out) <= point:
                out.append([])
            for b, g in enumerate(chunk):
                right = logits[b, targets[b][answers[g]]]
                rank = int((logits[b] > right).sum())
                if data.choices is None:
                    out[point].append({"rank": rank, "correct": rank == 0})
                else:
                    scores = logits[b, targets[b]]
                    out[point].append({"rank": rank, "correct": int(scores.argmax()) == answers[g]})
    return out


def lens_table(readings: list[list[dict]], multiple_choice: bool) -> list[dict]:
    """One row per residual-stream point: accuracy with its count and Wilson interval, and
    the answer's mean and median rank (free-form records)."""
    from statistics import median

    from wrapcli.models.adapters import resid_layers

    rows = []
    for (layer, hook), recs in zip(resid_layers(len(readings) - 1), readings):
        n, right = len(recs), sum(r["correct"] for r in recs)
        ranks = [r["rank"] for r in recs]
        rows.append({"layer": layer, "hook": hook, "accuracy": right / n, "n": n, "ci95": list(wilson(right, n)),
                     "mean_rank": None if multiple_choice else sum(ranks) / n,
                     "median_rank": None if multiple_choice else float(median(ranks))})
    return rows
