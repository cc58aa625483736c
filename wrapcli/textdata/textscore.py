"""How well a model answers user records (wrapcli/textdata/userdata.py), with one headline metric
per record kind, used by every command that scores records (eval, finetune, prune,
revive, compare):

- prompt/answer: **exact match**, the share of records whose every answer token is the
  teacher-forced argmax (the greedy continuation starts with the answer);
- multiple choice: **choice accuracy**, the share of records whose correct choice has the
  highest summed log-likelihood as a continuation of the prompt (lm-evaluation-harness's
  ``acc``); ``choice_accuracy_norm`` divides each log-likelihood by the choice's length in
  characters first (its ``acc_norm``). The chance level is the mean of 1/k.

Token accuracy and the mean answer loss stay as secondary figures. Every accuracy has its
count (records) and a Wilson interval.
"""

from __future__ import annotations

from wrapcli.textdata.userdata import TextData, answer_logits

METRICS = {"prompt": "exact_match", "choice": "choice_accuracy", "text": "token_accuracy"}


def example_scores(model, data: TextData, device="cpu", batch_size: int = 16) -> list[dict]:
    """Per example (a record, or one choice of a multiple-choice record): summed loss and
    count of the scored tokens, how many the teacher-forced argmax got right, and those
    argmax tokens (what the model would have said)."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(data.examples), batch_size):
            idx = list(range(start, min(start + batch_size, len(data.examples))))
            logits, target, rows, _ = answer_logits(model, data.collate(idx, device))
            loss = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none")  # (N,)
            pred = logits.argmax(-1)
            for row in range(len(idx)):
                m = rows == row
                out.append({"loss_sum": float(loss[m].sum()), "n_tokens": int(m.sum()),
                            "correct_tokens": int((pred[m] == target[m]).sum()),
                            "predicted_ids": pred[m].tolist()})
    return out


def record_results(data: TextData, rows: list[dict]) -> list[dict]:
    """Per record, from ``example_scores``: ``correct`` (by the kind's metric), and for
    multiple choice the choices' log-likelihoods, the picked choice (plain and
    length-normalised) and the chance level."""
    if data.choices is None:
        return [{**r, "correct": r["correct_tokens"] == r["n_tokens"]} for r in rows]
    out = []
    for c in data.choices:
        lls = [-rows[i]["loss_sum"] for i in c.rows]
        picked = max(range(len(lls)), key=lambda j: lls[j])  # ties: the first, as numpy's argmax
        normed = [ll / n for ll, n in zip(lls, c.chars)]
        picked_norm = max(range(len(lls)), key=lambda j: normed[j])
        gold = rows[c.rows[c.answer]]
        greedy = [rows[i]["correct_tokens"] == rows[i]["n_tokens"] for i in c.rows]  # lm-eval's is_greedy
        out.append({**gold, "loglikelihoods": lls, "greedy": greedy, "picked": picked, "picked_norm": picked_norm,
                    "correct": picked == c.answer, "correct_norm": picked_norm == c.answer,
                    "chance": 1 / len(c.rows)})
    return out


def summarize(data: TextData, records: list[dict]) -> dict:
    """The file's scores from ``record_results``: the headline metric (``metric``,
    ``accuracy``, ``n``, ``ci95``, ``chance``) and the kind's own figures. Loss and token
    accuracy are over the answer tokens (the correct choice's, for multiple choice)."""
    from wrapcli.core.stats import wilson

    count = sum(r["n_tokens"] for r in records)
    correct = sum(r["correct_tokens"] for r in records)
    n = len(records)
    right = sum(r["correct"] for r in records)
    out = {
        "metric": METRICS[data.kind],
        "loss": sum(r["loss_sum"] for r in records) / count,
        "token_accuracy": correct / count,
        # tokens of one record are not independent: the interval is optimistic for long answers
        "token_accuracy_ci95": list(wilson(correct, count)),
        "n_records": n,
        "n_scored_tokens": int(count),
    }
    if data.choices is None:
        out.update(exact_match=right / n, exact_match_ci95=list(wilson(right, n)))
        out.update(accuracy=right / n, n=n, ci95=list(wilson(right, n)), chance=None)
        if data.kind == "text":
            out.update(accuracy=correct / count, n=int(count), ci95=list(wilson(correct, count)))
        return out
    norm = sum(r["correct_norm"] for r in records)
    chance = sum(r["chance"] for r in records) / n
    out.update(choice_accuracy=right / n, choice_accuracy_ci95=list(wilson(right, n)),
               choice_accuracy_norm=norm / n, choice_accuracy_norm_ci95=list(wilson(norm, n)))
    out.update(accuracy=right / n, n=n, ci95=list(wilson(right, n)), chance=chance)
    return out


def score_records(model, data: TextData, device="cpu", batch_size: int = 16) -> list[dict]:
    """``record_results`` of the model on every record."""
    return record_results(data, example_scores(model, data, device, batch_size))


def score_text(model, data: TextData, device="cpu", batch_size: int = 16) -> dict:
    """The file's scores (``summarize``)."""
    return summarize(data, score_records(model, data, device, batch_size))
