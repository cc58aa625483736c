"""``wrapcli train``: pretrain a small transformer on the procedural tasks."""

from __future__ import annotations

import time
from typing import Annotated, Literal, Optional

import typer

from wrapcli.commands._options import (
    BatchSize,
    Debug,
    Device,
    EvalEvery,
    EvalSize,
    Fields,
    Force,
    Json,
    Log,
    Loss,
    Precision,
    Preset,
    Quiet,
    Resume,
    SaveEvery,
    Seed,
    Split,
    Steps,
    Template,
)
from wrapcli.terminal.console import errors_as_exit, progress, stderr
from wrapcli.terminal.tables import accuracy_table
from wrapcli.textdata.sources import reading

SUMMARY = "Pretrain on procedural tasks (counting, indexing, token lookup) or on your records."  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli train --task count --prior a=0.9,b=0.1 -o pt.safetensors --log pt.json

  wrapcli train --preset paper --device cuda -o pt.safetensors   # the paper's scale

  wrapcli facts world/ && wrapcli train --data world/pretrain.jsonl --tokenizer world/tokenizer \\
      --arch llama --steps 2000 --lr 3e-3 -o original/   # a small LM of your own records, from scratch
"""


def train(
    out: Annotated[str, typer.Option("-o", "--out", help="Checkpoint to write (.safetensors; a Hugging Face directory with --data).")],
    task: Annotated[Optional[str], typer.Option("--task", help="Task mix, e.g. count, count:a, count,index, token (default: count).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Train from scratch on user JSONL records instead (prompt/answer, multiple choice or text); needs --tokenizer.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help="With --data: a directory with tokenizer files (e.g. the one `wrapcli facts` writes).")] = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="With --data: JSONL scored before and after (default: --data itself).")] = None,
    prior: Annotated[Optional[str], typer.Option("--prior", help="Operand prior, e.g. a=0.9,b=0.1 (default: preset).")] = None,
    preset: Preset = "cpu",
    text_len: Annotated[Optional[int], typer.Option("--text-len", help="Terminals per text (default: preset).")] = None,
    window: Annotated[Optional[int], typer.Option("--window", help="Counting window O' (default: preset).")] = None,
    k: Annotated[int, typer.Option("--occurrence", min=1, help="Indexing: ask for the k-th occurrence (the paper's k).")] = 6,
    offset: Annotated[int, typer.Option("--offset", min=1, help="Token task: positions before <eot>.")] = 40,
    arch: Annotated[Optional[Literal["gpt2", "llama"]], typer.Option("--arch", help="gpt2 or llama (default: preset).")] = None,
    layers: Annotated[Optional[int], typer.Option("--layers", help="n_layers (default: preset).")] = None,
    heads: Annotated[Optional[int], typer.Option("--heads", help="n_heads (default: preset).")] = None,
    d_model: Annotated[Optional[int], typer.Option("--d-model", help="Width (default: preset).")] = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default: preset).")] = None,
    loss: Loss = None,
    eval_every: EvalEvery = None,
    eval_size: EvalSize = None,
    log: Log = None,
    resume: Resume = False,
    save_every: SaveEvery = None,
    seed: Seed = 0,
    fields: Fields = None,
    split: Split = None,
    template: Template = "raw",
    device: Device = "auto",
    precision: Precision = "auto",
    force: Force = False,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Pretrain on procedurally generated tasks (PCFG counting, indexing, token lookup).

    The operand prior decides how often pretraining asks about each operand, which is
    what later decides whether fine-tuning can reuse the capability.
    """
    with errors_as_exit(debug), reading(fields, split, template):
        from wrapcli.core.distributed import is_main
        from wrapcli.core.files import check_format, check_model_outputs
        from wrapcli.report import envelope as reports
        from wrapcli.runs.train import planned_steps, pretrain

        if data is not None or tokenizer is not None or eval_data is not None:
            _train_text(out, data, tokenizer, eval_data, preset, locals(), log, json_out, quiet)
            return
        if force:
            from wrapcli.core.errors import UsageError

            raise UsageError("--force applies to a directory output (train --data); a checkpoint file is replaced anyway")
        task = task or "count"
        check_model_outputs(out, log)
        check_format(out, "checkpoint", "-o")
        quiet = quiet or not is_main()  # under torchrun, rank 0 reports
        con = stderr(quiet)
        started = time.time()
        with progress(planned_steps("train", preset, steps), "train", quiet) as update:
            result = pretrain(
                out=out, task=task, preset=preset, prior=prior, text_len=text_len, window=window,
                k=k, offset=offset, arch=arch, layers=layers, heads=heads, d_model=d_model,
                steps=steps, batch_size=batch_size, lr=lr, loss=loss, eval_every=eval_every,
                eval_size=eval_size, resume=resume, save_every=save_every, seed=seed,
                device=device, precision=precision, on_step=update,
            )
        result["preset"] = preset
        result["wall_s"] = time.time() - started
        con.print(accuracy_table(result["final_eval"], f"{out}: evaluation after {result['train']['steps']} steps"))
        con.print(f"wrote {out} ({result['wall_s']:.0f} s)")
        report = reports.envelope("train", result, seed=seed, device=result["device"],
                                  precision=result["train"]["precision"])
        if is_main():
            reports.write(report, log, json_out)




BUILT_IN_ONLY = {"task": "--task", "prior": "--prior", "text_len": "--text-len", "window": "--window", "loss": "--loss",
                 "eval_size": "--eval-size"}


def _train_text(out, data, tokenizer, eval_data, preset, given: dict, log, json_out, quiet) -> None:
    """``train --data``: a fresh model trained from scratch on the user's records."""
    from wrapcli.core.distributed import is_main
    from wrapcli.core.errors import UsageError
    from wrapcli.core.files import check_model_outputs
    from wrapcli.report import envelope as reports
    from wrapcli.runs.train import planned_steps, pretrain_text

    if data is None or tokenizer is None:
        raise UsageError("train from your own records needs both --data and --tokenizer (--eval-data is optional)")
    refused = [flag for key, flag in BUILT_IN_ONLY.items() if given[key] is not None]
    refused += [flag for key, flag, default in (("k", "--occurrence", 6), ("offset", "--offset", 40)) if given[key] != default]
    if refused:
        raise UsageError(f"{', '.join(refused)} apply to built-in tasks, not to --data")
    check_model_outputs(out, log, [data, tokenizer, eval_data])
    quiet = quiet or not is_main()
    started = time.time()
    args = {k: given[k] for k in ("arch", "layers", "heads", "d_model", "steps", "batch_size", "lr", "eval_every",
                                  "resume", "save_every", "seed", "device", "precision", "force")}
    with progress(planned_steps("train", preset, given["steps"]), "train", quiet) as update:
        result = pretrain_text(out=out, data=data, tokenizer=tokenizer, eval_data=eval_data, preset=preset,
                               on_step=update, **args)
    result["preset"] = preset
    result["wall_s"] = time.time() - started
    from wrapcli.terminal.tables import describe_scores

    con = stderr(quiet)
    con.print(f"{eval_data or data} after training: {describe_scores(result['after'])}")
    con.print(f"wrote {out}/ ({result['wall_s']:.0f} s)")
    report = reports.envelope("train", result, inputs=[data, tokenizer, *([eval_data] if eval_data else [])], seed=given["seed"],
                              device=result["device"], precision=result["train"]["precision"])
    if is_main():
        reports.write(report, log, json_out)
