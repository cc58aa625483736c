"""``wrapcli prune``: weight x gradient pruning (docs/protocol.md "Pruning").

Report ``results``: ``checkpoint``; ``task`` (the scored task); ``also`` (extra tasks
evaluated); ``unit`` (neuron, head or weight); ``iterative``; ``n_units`` (how many units
of that kind the model has); ``batches`` and ``batch_size`` (scoring data); ``pruned``:
the units in pruning order, each ``{layer, kind, index, score}`` where score = sum of
weight x gradient over the unit's weights = first-order estimate of the task-loss drop
when the unit is zeroed; ``sweep``: one ``{"k", "results"}`` per K, ``results`` being
eval's ``{task: {setting: {accuracy, majority_baseline, ...}}}`` (or, with ``--data``,
``{"data": {loss, token_accuracy, exact_match, ...}}``); ``written``: the pruned
checkpoint, if ``-w`` was given; ``precision`` of the evaluations (the saliency is fp32).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from wrapcli.commands._options import (
    BatchSize,
    Debug,
    Device,
    EvalSize,
    Fields,
    Force,
    Json,
    Out,
    Precision,
    Quiet,
    Seed,
    Split,
    Template,
    refuse_given,
)

SUMMARY = "Does removing a handful of units bring the capability back?"  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli prune ft.safetensors --task count:a --also count:b --k 0,1,2,5,10,15,20 -o prune.json

  wrapcli prune ft.safetensors --task count:a -w pruned.safetensors --write-k 10

  wrapcli prune ft.safetensors --task count:a --unit row --revert-to pt.safetensors -o p.json
      # the paper's unit (a row of any weight matrix), reset to the base instead of zeroed

  wrapcli prune counter-ft.safetensors --task count:a --also count:b --unit weight --k 0,1,2,3,4,5 -o p.json
      # a compiled (Tracr) counter: single weights, the paper's unit for compiled models
"""


def prune(
    ctx: typer.Context,
    ckpt: Annotated[str, typer.Argument(help="The checkpoint to prune (.safetensors or HF directory).")],
    task: Annotated[Optional[str], typer.Option("--task", help="The capability to restore, e.g. count:a: scored and evaluated.")] = None,
    also: Annotated[Optional[list[str]], typer.Option("--also", help="Other tasks to evaluate at each K, e.g. count:b (repeatable).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Prompt/answer JSONL instead of a built-in task (HF directory with tokenizer).")] = None,
    unit: Annotated[Optional[Literal["neuron", "head", "weight", "row"]], typer.Option("--unit", help="row (the default: the paper's unit, Jain et al. 2024 Sec. 5: one output feature of any linear map in the blocks), neuron (MLP hidden unit), head, or weight (single weight of an output projection; a compiled model's default).")] = None,
    spurious: Annotated[float, typer.Option("--spurious", help="Built-in tasks: share of the scoring strings that carry the spurious relation (0: saliency on C_Te = 0 inputs, 1: on C_Te = 1).")] = 0.0,
    revert_to: Annotated[Optional[str], typer.Option("--revert-to", help="Reset the selected units to this base model's values instead of zeroing them (same shapes): localises the fine-tune's change.")] = None,
    k: Annotated[str, typer.Option("--k", help="Comma-separated K values to sweep.")] = "0,1,2,5,10,15,20",
    iterative: Annotated[bool, typer.Option("--iterative", help="Re-score after every removal.")] = False,
    batches: Annotated[int, typer.Option("--batches", help="Forward/backward passes to score with.")] = 1,
    batch_size: BatchSize = 512,
    eval_size: EvalSize = 512,
    write: Annotated[Optional[str], typer.Option("-w", "--write", help="Write the pruned model here: a .safetensors file, or a directory (with the tokenizer) for an HF directory.")] = None,
    write_k: Annotated[Optional[int], typer.Option("--write-k", help="Units pruned in the written checkpoint.")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Draw accuracy vs K to this image (needs matplotlib: the plot extra).")] = None,
    seed: Seed = 0,
    fields: Fields = None,
    split: Split = None,
    template: Template = "raw",
    device: Device = "auto",
    precision: Precision = "auto",
    force: Force = False,
    out: Out = None,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Does removing a handful of units bring the capability back? Sweep K, report accuracy."""
    from wrapcli.terminal.console import errors_as_exit, stderr
    from wrapcli.textdata.sources import reading

    with errors_as_exit(debug), reading(fields, split, template):
        from wrapcli.core.errors import UsageError
        from wrapcli.core.files import check_distinct, check_format, check_outputs, check_writable
        from wrapcli.core.runtime import resolve_device, resolve_precision
        from wrapcli.report import envelope as reports
        from wrapcli.runs import prune as run
        from wrapcli.terminal import tables
        from wrapcli.terminal.plots import require_matplotlib

        try:
            ks = [int(x) for x in k.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"--k takes comma-separated integers, got {k!r}") from None
        if not ks or any(b <= a for a, b in zip(ks, ks[1:])) or ks[0] < 0:
            raise UsageError(f"--k takes strictly increasing integers >= 0 (e.g. 0,1,2,5), got {k!r}")
        check_outputs(out, plot, inputs=[ckpt, data, revert_to])
        check_format(out, "report", "-o")
        check_format(plot, "plot", "--plot")
        check_format(write, "checkpoint", "-w")
        if force and not (write and Path(ckpt).is_dir()):
            raise UsageError("--force applies to -w DIR (a pruned Hugging Face directory)")
        if not write:
            refuse_given(ctx, ("write_k",), "only with -w (the pruned checkpoint to write)")
        if data is not None:
            refuse_given(ctx, ("eval_size",), "to built-in tasks; --data scores every record")
        if write:
            check_distinct([out, plot, write], [ckpt, data, revert_to])
            into_dir = Path(ckpt).is_dir()
            if into_dir == str(write).endswith(".safetensors"):
                raise UsageError(f"-w {write}: a Hugging Face directory is pruned into a directory, a .safetensors "
                                 "checkpoint into a .safetensors file")
            check_writable(write, directory=into_dir)
        if plot:
            require_matplotlib()
        device = resolve_device(device)
        result = run.prune(
            ckpt_path=ckpt, task=task, also=also or [], data=data, kind=unit, ks=ks,
            iterative=iterative, batches=batches, batch_size=batch_size, eval_size=eval_size,
            seed=seed, device=device, write=write, write_k=write_k,
            precision=resolve_precision(precision, device), revert_to=revert_to, spurious=spurious, force=force,
        )
        stderr(quiet).print(tables.sweep_table(result))
        if plot:
            from wrapcli.terminal.plots import line_plot

            series = tables.prune_series(result)
            line_plot(plot, [r["k"] for r in result["sweep"]], series, "units pruned (K)",
                      f"prune {result['task']} ({result['unit']})", log_x=False)
        report = reports.envelope("prune", result, inputs=[ckpt] + [f for f in (data, revert_to) if f], seed=seed,
                                  device=device,
                                  precision=result["precision"])
        reports.write(report, out, json_out)


