"""`wrapcli eval`: load (or dispatch) the model and assemble the results: built-in tasks
(accuracy per setting, optionally through a relabelling), a compiled (Tracr) model on its
program or counting task, or a Hugging Face directory on the user's records (each scored
by its kind's metric, with one sample per record)."""

from __future__ import annotations


def evaluate(ckpt: str, *, tasks=None, n: int = 1000, seed: int = 0, device: str = "cpu", precision: str = "fp32",
             mapping=None, placement: dict | None = None) -> dict:
    """Accuracy on built-in tasks of a wrapcli or a compiled (Tracr) checkpoint: the one
    place that tells the two apart (the records of a Hugging Face directory are
    ``eval_data``)."""
    from wrapcli.core.errors import UsageError
    from wrapcli.models import checkpoint

    if not checkpoint.is_compiled(ckpt):
        return eval_tasks(ckpt, tasks, n, seed, device, precision, mapping, placement)
    if placement is not None:
        raise UsageError("--device-map is for Hugging Face directories, not compiled (Tracr) models")
    if mapping:
        raise UsageError("--conjugate is for the built-in tasks, not compiled (Tracr) models")
    return eval_compiled(ckpt, tasks, n, seed, device)


def eval_data(ckpt: str, data: str, device: str, precision: str = "fp32", placement: dict | None = None,
              shots: list[int] | None = None, shots_from: str | None = None, seed: int = 0,
              samples_format: str = "wrapcli") -> tuple[dict, list[dict]]:
    """Scores of a Hugging Face model on prompt/answer or multiple-choice records, and one
    sample per record. With ``precision`` bf16 the weights are loaded and kept in bf16
    (half the memory of fp32: an 8B model's weights take 16 GB), not autocast. With
    ``placement`` the layers are dispatched over the devices, the CPU and disk. With
    ``shots`` (numbers of in-context examples, wrapcli/textdata/shots.py) the records are
    also scored with that many demonstrations from ``shots_from`` before each prompt.
    ``samples_format`` lm-eval gives the samples in lm-evaluation-harness's own format
    (wrapcli/textdata/samples.py)."""
    from wrapcli.models import checkpoint
    from wrapcli.textdata.textscore import score_records, summarize
    from wrapcli.textdata.userdata import load_tokenizer, text_data

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
    if samples_format == "lm-eval":
        from wrapcli.textdata.samples import lm_eval_line

        lines = [lm_eval_line(i, rec, r) for i, (rec, r) in enumerate(zip(records, scored))]
    from wrapcli.textdata.sources import describe

    results = {"checkpoint": str(ckpt), "data": str(data), "source": describe(data), "n": len(records),
               "precision": precision, "scores": summarize(td, scored), "correct": [bool(r["correct"]) for r in scored],
               "attack": attack_of(ck.lineage), "device": device}
    if shots:
        results["shots"] = score_with_shots(ck.model, tok, ckpt, data, device, shots, shots_from, seed, lines)
    if placement is not None:
        results["placement"] = {**placement, "modules": checkpoint.placed_on(ck.model)}
    return results, lines


def attack_of(lineage: list[dict]) -> dict | None:
    """The attack that wrote this model, read from its lineage (wrapcli quantize), so that
    compare holds its accuracy against the model it attacked: None for any other model."""
    last = lineage[-1] if lineage else {}
    if last.get("kind") != "quantize":
        return None
    return {"kind": "quantize", "of": last.get("parent_sha256"),
            **{k: last.get(k) for k in ("scheme", "bits", "group_size")}}


def score_with_shots(model, tok, ckpt, data, device, shots, shots_from, seed, lines) -> dict:
    """Accuracy with K in-context examples before each prompt, for every K of ``shots``;
    each sample line gets the prompt as scored and whether it was answered, per K."""
    from functools import partial

    from wrapcli.core.errors import UsageError
    from wrapcli.textdata.shots import SEPARATOR, with_shots
    from wrapcli.textdata.textscore import score_records, summarize
    from wrapcli.textdata.userdata import read_records, text_data

    pool_kind, pool, _ = read_records(shots_from)
    if pool_kind == "text":
        raise UsageError(f"--shots-from {shots_from}: text records have no answer to show; give prompt/answer or "
                         "multiple-choice records")
    per_k = []
    for k in shots:
        td = text_data(data, ckpt, model, 0, tokenizer=tok, kinds=("prompt", "choice"),
                       rewrite=partial(with_shots, pool=pool, k=k, seed=seed, pool_name=f"--shots-from {shots_from}"))
        scored = score_records(model, td, device)
        s = summarize(td, scored)
        per_k.append({"k": k, "metric": s["metric"], "accuracy": s["accuracy"], "n": s["n"], "ci95": s["ci95"],
                      "chance": s["chance"], "correct": [bool(r["correct"]) for r in scored]})
        for line, rec, r in zip(lines, td.records, scored):
            line.setdefault("shots", {})[str(k)] = {"prompt": rec["prompt"], "correct": r["correct"]}
    return {"from": str(shots_from), "seed": seed, "separator": SEPARATOR, "per_k": per_k}


def eval_tasks(ckpt, tasks, n: int, seed: int, device: str, precision: str, mapping=None,
               placement: dict | None = None) -> dict:
    """Accuracy on built-in tasks (default: the checkpoint's own), and with ``mapping``
    also through that relabelling of a, b, c (answers mapped back)."""
    from wrapcli.models import checkpoint
    from wrapcli.tasks.checks import task_for
    from wrapcli.tasks.evaluation import check_eval_memory, evaluate

    ck = checkpoint.load(ckpt, device=device, placement=placement)
    specs = [task_for(ck, t).replace(seed=seed) for t in tasks or [None]]
    for spec in specs:
        check_eval_memory("--eval-size", n, spec)
    results = {"checkpoint": str(ckpt), "eval_seed": seed, "n": n, "precision": precision, "tasks": {}}
    if placement is not None:
        results["placement"] = {**placement, "modules": checkpoint.placed_on(ck.model)}
    for spec in specs:
        results["tasks"].update(evaluate(ck.model, spec, n, device, precision=precision))
    if mapping:
        conj = {}
        for spec in specs:
            conj.update(evaluate(ck.model, spec, n, device, conjugate=mapping, precision=precision))
        results["conjugate"] = {"mapping": mapping, "tasks": conj}
    return results


def eval_compiled(ckpt, tasks, n: int, seed: int, device: str) -> dict:
    """A compiled model on its program (``compiled:PROGRAM``, by default) or, for a
    counter, on ``--task count:X`` with and without the spurious feature, with the
    counter's attention at the answer position."""
    from wrapcli.compiled import model as compiled
    from wrapcli.core.errors import UsageError

    model = compiled.load_checkpoint(ckpt)
    results = {"checkpoint": str(ckpt), "eval_seed": seed, "n": n, "precision": "fp32", "tasks": {}}
    for t in tasks or [None]:
        if t is not None and not t.startswith("count:"):
            raise UsageError(f"--task {t}: a compiled model takes count:a, count:b or count:c (counter)")
        operand = None if t is None else t.split(":", 1)[1]
        settings = ("natural",) if t is None else compiled.SETTINGS
        results["tasks"].update(compiled.evaluate(model, n, seed, device, operand=operand, settings=settings))
    if model.spec.program == "counter":
        from wrapcli.runs.compiled import attention

        results["attention"] = attention(model, n, seed)
    return results
