"""`wrapcli eval` on a Hugging Face directory and the user's records: load (or dispatch)
the model, score every record by its kind's metric, and assemble the results and one
sample per record."""

from __future__ import annotations


def eval_data(ckpt: str, data: str, device: str, precision: str = "fp32", placement: dict | None = None
              ) -> tuple[dict, list[dict]]:
    """Scores of a Hugging Face model on prompt/answer or multiple-choice records, and one
    sample per record. With ``precision`` bf16 the weights are loaded and kept in bf16
    (half the memory of fp32: an 8B model's weights take 16 GB), not autocast. With
    ``placement`` the layers are dispatched over the devices, the CPU and disk."""
    from wrapcli import checkpoint
    from wrapcli.textscore import score_records, summarize
    from wrapcli.userdata import load_tokenizer, text_data

    ck = checkpoint.load(ckpt, dtype="bfloat16" if precision == "bf16" else "float32", device=device,
                         placement=placement)
    tok = load_tokenizer(ckpt)
    td = text_data(data, ckpt, ck.model, 0, tokenizer=tok, kinds=("prompt", "choice"))
    records = td.records
    scored = score_records(ck.model, td, device)
    lines = []
    for rec, r in zip(records, scored):
        line = {"prompt": rec["prompt"], "correct": r["correct"], "loss": r["loss_sum"] / r["n_tokens"]}
        if td.choices is None:
            line.update(expected=rec["answer"], predicted=tok.decode(r["predicted_ids"]))
        else:  # the choices' summed log-likelihoods, as lm-evaluation-harness logs them
            line.update(choices=rec["choices"], answer=rec["answer"], loglikelihoods=r["loglikelihoods"],
                        picked=r["picked"], picked_norm=r["picked_norm"], correct_norm=r["correct_norm"])
        lines.append(line)
    results = {"checkpoint": str(ckpt), "data": str(data), "n": len(records), "precision": precision,
               "scores": summarize(td, scored), "device": device}
    if placement is not None:
        results["placement"] = {**placement, "modules": checkpoint.placed_on(ck.model)}
    return results, lines
