"""``wrapcli revive``: reverse fine-tuning against controls (docs/protocol.md "Reverse fine-tuning").

Report ``results``: documented key by key in docs/reports.md (wrapcli/report/schema.py). Each
model's accuracy at every evaluated step (0, 5, 7, 10, 15, 20, 30, ...: neighbours at most
1.5x apart) per seed, with mean, std and a t-interval over seeds; steps to the threshold
per seed, interpolated in log(step); the speed-up over each control with a bootstrap
interval over seeds.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from wrapcli.commands._options import (
    BatchSize,
    Debug,
    Device,
    EvalSize,
    Fields,
    Json,
    Out,
    Precision,
    Preset,
    Quiet,
    Split,
    Steps,
    Template,
    refuse_given,
)

SUMMARY = "Reverse fine-tune: does the capability come back faster than in models that never had it?"  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli revive ft.safetensors --task count:a --scratch --seeds 3 -o revive.json --plot revive.png

  wrapcli revive forgot/ --data relearn.jsonl --eval-data heldout.jsonl --reference original/ \\
      --lr 1e-6,1e-5,1e-4 --steps 100 -o relearn.json   # a relearning attack, no control needed

  wrapcli revive ft.safetensors --task count:a --control scrft.safetensors -o revive.json

  wrapcli revive counter-ft.safetensors --task count:a --scratch --steps 2000 -o revive.json   # compiled
"""


def revive(
    ctx: typer.Context,
    ckpt: Annotated[str, typer.Argument(help="The fine-tuned checkpoint to revive.")],
    task: Annotated[Optional[str], typer.Option("--task", help="The capability to bring back, e.g. count:a.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="HF directories: prompt/answer JSONL to relearn on (instead of --task).")] = None,
    eval_data: Annotated[Optional[str], typer.Option("--eval-data", help="With --data: held-out prompt/answer (exact match) or multiple-choice (choice accuracy) JSONL scored as the capability returns.")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="With --data: the original model; says which held-out records were known, estimates the floor from those it gets wrong, and gives the recovered fraction and the default threshold (0.9 x its accuracy).")] = None,
    control: Annotated[Optional[list[str]], typer.Option("--control", help="A control checkpoint, trained identically (repeatable).")] = None,
    scratch: Annotated[bool, typer.Option("--scratch", help="Add a fresh initialisation of the same config as a control.")] = False,
    lr: Annotated[Optional[str], typer.Option("--lr", help="small, medium, large or a number (default: fine-tuning LR / 10 from the lineage). With --data a comma-separated grid, e.g. 1e-6,1e-5,1e-4 (default: the fine-tuning LR / 10 and x 1, else that grid); the criterion takes the best LR, Bonferroni-corrected.")] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Repeats with different data and initialisation seeds (compare needs >= 3 to cite revival).")] = 3,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Accuracy that counts as revived (default: 0.9 x pretrained, else 0.9).")] = None,
    lora: Annotated[Optional[int], typer.Option("--lora", help="With --data: relearn with rank-R LoRA adapters (peft, the lora extra) instead of every weight: the weaker, cheaper attack.")] = None,
    lora_targets: Annotated[str, typer.Option("--lora-targets", help="With --lora: module names to adapt, comma-separated, or all-linear.")] = "all-linear",
    checkpointing: Annotated[bool, typer.Option("--checkpointing", help="With --data: gradient checkpointing (recompute activations in the backward pass): less memory on long records, about a third more compute.")] = False,
    fsdp: Annotated[bool, typer.Option("--fsdp", help="With --data, under torchrun: fully shard the weights, gradients and AdamW moments over the processes (torch FSDP) instead of replicating them.")] = False,
    margin: Annotated[Optional[float], typer.Option("--relearn-margin", help="With --data: held-out accuracy above the floor that counts as relearned (default 0.05; compare's option of the same name re-reads it).")] = None,
    preset: Preset = "cpu",
    steps: Steps = None,
    batch_size: BatchSize = None,
    eval_size: EvalSize = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Draw the curves to this image (needs matplotlib: the plot extra).")] = None,
    save_dir: Annotated[Optional[str], typer.Option("--save-dir", help="Keep each seed's revived checkpoint here (revived_seedS.safetensors).")] = None,
    keep_every: Annotated[Optional[int], typer.Option("--keep-every", min=1, help="With --save-dir, also keep a checkpoint every N steps (revived_seedS_stepN.safetensors).")] = None,
    fields: Fields = None,
    split: Split = None,
    template: Template = "raw",
    device: Device = "auto",
    precision: Precision = "auto",
    out: Out = None,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Reverse fine-tune on the pretraining task: how many steps until the capability returns,
    against controls that never had it?"""
    from wrapcli.terminal.console import errors_as_exit, progress, stderr
    from wrapcli.textdata.sources import reading

    with errors_as_exit(debug), reading(fields, split, template):
        from wrapcli.core.files import check_format, check_outputs
        from wrapcli.core.runtime import resolve_device
        from wrapcli.report import envelope as reports
        from wrapcli.runs import revive as run
        from wrapcli.terminal import tables
        from wrapcli.terminal.plots import line_plot, require_matplotlib

        check_outputs(out, plot, inputs=[ckpt, *(control or []), data, eval_data, reference])
        check_format(out, "report", "-o")
        check_format(plot, "plot", "--plot")
        from wrapcli.core.distributed import is_main

        quiet = quiet or not is_main()  # under torchrun, rank 0 reports
        _refuse_misplaced(ctx, task, data, scratch=scratch, save_dir=save_dir, eval_data=eval_data, reference=reference,
                          margin=margin, lora=lora, lora_targets=lora_targets, checkpointing=checkpointing, fsdp=fsdp)
        from wrapcli.training.lora import lora_option

        lora_spec = lora_option(lora, lora_targets)
        if plot:
            require_matplotlib()
        device = resolve_device(device)
        total = run.planned_steps(ckpt_path=ckpt, data=data, lr=lr, preset=preset, steps=steps, seeds=seeds,
                                  n_controls=len(control or []), scratch=scratch, save_dir=save_dir,
                                  lora=lora is not None)
        with progress(total, "revive", quiet) as on_progress:  # every curve's steps in turn
            result = run.revive_checkpoint(
                ckpt_path=ckpt, task=task, data=data, preset=preset, scratch=scratch, eval_data=eval_data,
                reference=reference, margin=margin, lora=lora_spec, checkpointing=checkpointing, shard=fsdp,
                eval_size=eval_size, save_dir=save_dir, keep_every=keep_every, controls=control or [], lr=lr,
                steps=steps, batch_size=batch_size, seeds=seeds, threshold=threshold, device=device,
                precision=precision, on_progress=on_progress)
        if result is None:  # another rank than 0 under torchrun: rank 0 reports
            return
        con = stderr(quiet)
        con.print(tables.revival_table(result["eval_steps"], result["models"], result["threshold"]))
        con.print(result["speedup"]["verdict"])
        if "relearning" in result:
            for g in result["lr_grid"]:
                con.print(f"lr {g['lr']:g}: held-out {result['metric'].replace('_', ' ')} "
                          f"{g['models'][0]['accuracy']['mean'][0]:.1%} -> {g['models'][0]['accuracy']['mean'][-1]:.1%}")
            crit = result["relearning"]
            con.print(f"relearning criterion {crit['outcome'].upper()}: {crit['text']}"
                      + (f" (to settle it: {crit['settle']})" if crit["settle"] else ""))
        if plot:
            models = result["models"]
            line_plot(plot, result["eval_steps"], {m["name"]: m["accuracy"]["mean"] for m in models},
                      "reverse fine-tuning step (0 drawn at 1)",
                      f"revive {result['task'] or result['eval_data']} at lr={result['lr']:g}",
                      log_x=True, bands={m["name"]: m["accuracy"]["std"] for m in models},
                      hline=(result["threshold"], "threshold"))
        inputs = [ckpt, *(control or []), *[f for f in (data, eval_data, reference) if f]]
        report = reports.envelope("revive", result, inputs=inputs,
                                  seed=result["seeds"][0], device=device,
                                  precision=result["train"]["precision"])
        reports.write(report, out, json_out)


def _refuse_misplaced(ctx, task, data, *, scratch, save_dir, eval_data, reference, margin, lora, lora_targets, checkpointing,
                      fsdp) -> None:
    """The options of the other kind of revival (built-in task or --data), or of --lora,
    refused in one line before anything is loaded."""
    from wrapcli.core.distributed import world
    from wrapcli.core.errors import UsageError

    if (task is None) == (data is None):
        raise UsageError("give exactly one of --task (built-in task) or --data (prompt/answer JSONL)")
    if world().size > 1 and data is None:
        raise UsageError("under torchrun, revive runs data-parallel on --data records only")
    if data is not None and (scratch or save_dir):
        raise UsageError("--scratch and --save-dir apply to built-in tasks; with --data the relearning is held "
                         "against a floor: give --reference (or --control DIR), not --scratch")
    given = [f for f, v in (("--eval-data", eval_data), ("--reference", reference), ("--relearn-margin", margin),
                            ("--lora", lora), ("--checkpointing", checkpointing or None), ("--fsdp", fsdp or None))
             if v is not None]
    if data is None and given:
        raise UsageError(f"{', '.join(given)} {'go' if len(given) > 1 else 'goes'} with --data")
    if data is not None:
        refuse_given(ctx, ("eval_size",), "to built-in tasks; --eval-data is scored whole")
    if lora_targets != "all-linear" and lora is None:
        raise UsageError("--lora-targets goes with --lora")
    if fsdp:
        from wrapcli.core.distributed import check_shardable

        check_shardable(lora=lora is not None)
