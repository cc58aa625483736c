"""How well a model answers user records (wrapcli/userdata.py): per record the loss and
the teacher-forced argmax tokens, and over the file the mean loss per scored token, the
token accuracy and the exact match, with intervals."""

from __future__ import annotations

from wrapcli.userdata import TextData, answer_logits


def record_scores(model, data: TextData, device="cpu", batch_size: int = 16) -> list[dict]:
    """Per record: summed loss and count of the scored tokens, how many the teacher-forced
    argmax got right, and those argmax tokens (what the model would have said)."""
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


def score_text(model, data: TextData, device="cpu", batch_size: int = 16) -> dict:
    """Mean loss per scored token and the share of scored tokens predicted exactly
    (teacher-forced argmax), plus the share of records whose every scored token is right."""
    from wrapcli.stats import wilson

    rows = record_scores(model, data, device, batch_size)
    count = sum(r["n_tokens"] for r in rows)
    correct = sum(r["correct_tokens"] for r in rows)
    exact = sum(r["correct_tokens"] == r["n_tokens"] for r in rows)
    n = len(rows)
    return {
        "loss": sum(r["loss_sum"] for r in rows) / count,
        "token_accuracy": correct / count,
        # tokens of one record are not independent: the interval is optimistic for long answers
        "token_accuracy_ci95": list(wilson(correct, count)),
        "exact_match": exact / n,
        "exact_match_ci95": list(wilson(exact, n)),
        "n_records": n,
        "n_scored_tokens": int(count),
    }
