"""``wrapcli finetune``: fine-tune a checkpoint on a new task (docs/protocol.md "Fine-tuning")."""

from __future__ import annotations

import time
from typing import Annotated, Optional

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

SUMMARY = "Fine-tune a checkpoint on a new task or on your records."  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli finetune pt.safetensors --task count:b --lr small -o ft_small.safetensors

  wrapcli finetune pt.safetensors --task count:b --lr medium --spurious 1.0 -o ft_sp.safetensors

  wrapcli finetune my-model/ --data stories.jsonl --lr 1e-5 --batch-size 8 -o my-model-ft/

  wrapcli finetune counter.safetensors --task count:b --lr 1e-3 --spurious 1.0 -o counter-ft.safetensors
      # a compiled (Tracr) counter: SGD + momentum, batch 96, 10,000 steps (docs/compiled.md)
"""


def finetune(
    ckpt: Annotated[str, typer.Argument(help="Parent checkpoint (.safetensors or HF directory).")],
    out: Annotated[str, typer.Option("-o", "--out", help="Checkpoint to write (.safetensors; a directory with --data).")],
    task: Annotated[Optional[str], typer.Option("--task", help="Fine-tuning task, e.g. count:b or index:b.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="User JSONL ({prompt, answer}, multiple choice {prompt, choices, answer} trained on the correct choice, or {text}) instead of a built-in task; CKPT must be an HF directory with a tokenizer, -o a directory.")] = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="JSONL scored before and after (default: --data itself).")] = None,
    lr: Annotated[str, typer.Option("--lr", help="small, medium, large (preset values) or a number like 3e-5.")] = "medium",
    lora: Annotated[Optional[int], typer.Option("--lora", help="With --data: train rank-R LoRA adapters (peft, the lora extra) instead of every weight; merged into the written model.")] = None,
    lora_targets: Annotated[str, typer.Option("--lora-targets", help="With --lora: module names to adapt, comma-separated, or all-linear (every linear map of the blocks).")] = "all-linear",
    adapter_only: Annotated[bool, typer.Option("--adapter-only", help="With --lora: write peft's adapter directory instead of the merged model.")] = False,
    checkpointing: Annotated[bool, typer.Option("--checkpointing", help="With --data: gradient checkpointing (recompute activations in the backward pass): less memory on long records, about a third more compute.")] = False,
    fsdp: Annotated[bool, typer.Option("--fsdp", help="With --data, under torchrun: fully shard the weights, gradients and AdamW moments over the processes (torch FSDP) instead of replicating them.")] = False,
    spurious: Annotated[float, typer.Option("--spurious", help="C_Tr: fraction of strings with count(b) = count(a) + q.")] = 0.0,
    spurious_offset: Annotated[int, typer.Option("--spurious-offset", help="q, the spurious offset.")] = 1,
    mix: Annotated[float, typer.Option("--mix", help="Fraction of batches drawn from the parent's pretraining task.")] = 0.0,
    preset: Preset = "cpu",
    steps: Steps = None,
    batch_size: BatchSize = None,
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
    """Fine-tune on a new task, watching both operands with (C_Te=1) and without (C_Te=0) the spurious feature."""
    from wrapcli.terminal.console import errors_as_exit, progress, stderr
    from wrapcli.terminal.tables import accuracy_table
    from wrapcli.textdata.sources import reading

    with errors_as_exit(debug), reading(fields, split, template):
        from wrapcli.core.distributed import is_main
        from wrapcli.core.errors import UsageError
        from wrapcli.core.files import check_format, check_model_outputs
        from wrapcli.report import envelope as reports
        from wrapcli.runs.train import finetune as run
        from wrapcli.runs.train import finetune_text, planned_steps, takes_sgd_recipe
        con = stderr(quiet := quiet or not is_main())  # under torchrun, rank 0 reports
        started = time.time()
        if (task is None) == (data is None):
            raise UsageError("give exactly one of --task (built-in task) or --data (user JSONL)")
        check_model_outputs(out, log, [ckpt, data, eval_data])
        check_format(out, "checkpoint", "-o")
        if takes_sgd_recipe(ckpt):
            _finetune_compiled(ckpt, out, task, lr, spurious, steps, batch_size, eval_every, eval_size, seed, log, json_out,
                               quiet, con, refused=(("--data", data), ("--mix", mix), ("--loss", loss), ("--resume", resume),
                                        ("--save-every", save_every), ("--spurious-offset", spurious_offset != 1),
                                        ("--preset", preset != "cpu"), ("--device", device not in ("auto", "cpu")),
                                        ("--checkpointing", checkpointing), ("--fsdp", fsdp)))
            return
        _refuse_misplaced(data, spurious=spurious, spurious_offset=spurious_offset, mix=mix, loss=loss,
                          eval_size=eval_size, eval_data=eval_data, lora=lora, force=force, checkpointing=checkpointing,
                          fsdp=fsdp, adapter_only=adapter_only, lora_targets=lora_targets, resume=resume,
                          save_every=save_every)
        if data is not None:
            from wrapcli.training.lora import lora_option

            with progress(planned_steps("finetune", preset, steps), "finetune", quiet) as update:
                result = finetune_text(
                    parent=ckpt, out=out, data=data, eval_data=eval_data, preset=preset, lr=lr, steps=steps,
                    batch_size=batch_size, eval_every=eval_every, resume=resume, save_every=save_every, seed=seed,
                    device=device, precision=precision, on_step=update, lora=lora_option(lora, lora_targets),
                    adapter_only=adapter_only, force=force, checkpointing=checkpointing, shard=fsdp)
            result["wall_s"] = time.time() - started
            _print_text_result(con, result, eval_data or data, adapter_only)
            con.print(f"wrote {out}/ ({result['wall_s']:.0f} s)")
            if is_main():
                reports.write(reports.envelope("finetune", result, inputs=[ckpt, data, *([eval_data] if eval_data else [])],
                                               seed=seed, device=result["device"], precision=result["train"]["precision"]),
                              log, json_out)
            return
        with progress(planned_steps("finetune", preset, steps), "finetune", quiet) as update:
            result = run(
                parent=ckpt, out=out, task=task, preset=preset, lr=lr, spurious=spurious,
                spurious_offset=spurious_offset, mix=mix, steps=steps, batch_size=batch_size,
                loss=loss, eval_every=eval_every, eval_size=eval_size, resume=resume,
                save_every=save_every, seed=seed, device=device, precision=precision, on_step=update,
            )
        result["preset"] = preset
        result["wall_s"] = time.time() - started
        con.print(accuracy_table(result["final_eval"], f"{out}: after fine-tuning at lr={result['train']['lr']:g}"))
        con.print(f"wrote {out} ({result['wall_s']:.0f} s)")
        report = reports.envelope("finetune", result, inputs=[ckpt], seed=seed, device=result["device"],
                                  precision=result["train"]["precision"])
        if is_main():
            reports.write(report, log, json_out)


def _refuse_misplaced(data, *, spurious, spurious_offset, mix, loss, eval_size, eval_data, lora, force, checkpointing,
                      fsdp, adapter_only, lora_targets, resume, save_every) -> None:
    """The options that belong to the other kind of fine-tuning (built-in task or --data),
    or to --lora, refused in one line before anything is loaded."""
    from wrapcli.core.errors import UsageError

    if data is not None:
        ignored = [flag for flag, given in (("--spurious", spurious), ("--spurious-offset", spurious_offset != 1),
                                            ("--mix", mix), ("--loss", loss), ("--eval-size", eval_size))
                   if given]
        if ignored:
            raise UsageError(f"{', '.join(ignored)} apply to built-in tasks, not to --data")
    else:
        given = [flag for flag, on in (("--eval-data", eval_data), ("--lora", lora is not None), ("--force", force),
                                       ("--checkpointing", checkpointing), ("--fsdp", fsdp)) if on]
        if given:
            raise UsageError(f"{given[0]} goes with --data")
    if (adapter_only or lora_targets != "all-linear") and lora is None:
        raise UsageError("--adapter-only and --lora-targets go with --lora")
    if fsdp:
        from wrapcli.core.distributed import check_shardable

        check_shardable(lora=lora is not None, resume=resume, save_every=save_every)


def _print_text_result(con, result: dict, scored: str, adapter_only: bool) -> None:
    b, a = result["before"], result["after"]
    con.print(f"{scored}: loss {b['loss']:.3f} -> {a['loss']:.3f}, token accuracy "
              f"{b['token_accuracy']:.1%} -> {a['token_accuracy']:.1%}, {a['metric'].replace('_', ' ')} "
              f"{b['accuracy']:.1%} -> {a['accuracy']:.1%}")
    if result["lora"]:
        a = result["lora"]
        con.print(f"LoRA rank {a['rank']} on {len(a['modules'])} linear maps: {a['trainable_params']:,} "
                  f"trainable parameters of {a['model_params']:,}"
                  + ("; adapter written alone" if adapter_only else "; merged into the written model"))


def _finetune_compiled(ckpt, out, task, lr, spurious, steps, batch_size, eval_every, eval_size, seed, log, json_out,
                       quiet, con, refused) -> None:
    """A compiled (Tracr) counter fine-tuned with the paper's SGD recipe
    (wrapcli/compiled/training.py): --steps (10,000), --batch-size (96), --lr."""
    from wrapcli.core.errors import UsageError
    from wrapcli.report import envelope as reports
    from wrapcli.runs import compiled as compiled_runs
    from wrapcli.terminal.console import progress
    from wrapcli.terminal.tables import accuracy_table

    given = [flag for flag, value in refused if value]
    if given:
        raise UsageError(f"{', '.join(given)}: not for compiled (Tracr) models, which take the paper's SGD recipe "
                         "(docs/compiled.md)")
    if task is None:
        raise UsageError("give --task count:X for a compiled counter")
    args = {"steps": steps, "batch_size": batch_size, "eval_every": eval_every, "eval_size": eval_size}
    from wrapcli.runs.train import planned_steps

    with progress(planned_steps("finetune", "cpu", steps, parent=ckpt), "finetune", quiet) as update:
        result = compiled_runs.finetune(parent=ckpt, out=out, task=task, lr=lr, spurious=spurious, recipe_args=args,
                                        seed=seed, on_progress=update)
    con.print(accuracy_table(result["final_eval"], f"{out}: after fine-tuning at lr={result['train']['lr']:g} (SGD)"))
    con.print(f"wrote {out} ({result['wall_s']:.0f} s)")
    reports.write(reports.envelope("finetune", result, inputs=[ckpt], seed=seed, device="cpu", precision="fp32"),
                  log, json_out)
