"""``wrapcli compare``: side by side, what changed between checkpoints, where, and the verdict.

Report ``results``: documented key by key in docs/reports.md (wrapcli/report/schema.py); the
decision rules are in wrapcli/verdicts/rules.py. Every verdict lists its criteria, each with
its number, 95% interval, threshold and outcome (pass / fail / unclear).
Exit codes: 0 done, 1 error, 2 usage, 3 the verdict matched ``--fail-on``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from wrapcli.commands._options import (
    Debug,
    Device,
    DeviceMap,
    Fields,
    Json,
    MaxMemory,
    Out,
    PrecisionName,
    Quiet,
    Split,
    Template,
    refuse_given,
)
from wrapcli.verdicts.thresholds import Thresholds

SUMMARY = "What did fine-tuning change, and is the capability gone or only wrapped?"  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli compare pt.safetensors ft.safetensors --task count:a --reports prune.json --reports probe.json -o audit.json --markdown audit.md

  wrapcli compare base/ tuned/ --task prompts.jsonl --fail-on wrapped   # exit 3 if wrapped

  wrapcli compare base/ tuned/ --view capitals.jsonl=capitals-mc.jsonl   # free-form and multiple-choice views of one capability
"""


def compare(
    ctx: typer.Context,
    ckpts: Annotated[list[str], typer.Argument(help="Two or more checkpoints; the first is the base.")],
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Capability to compare: a built-in task (count:a) or a prompt/answer JSONL file. Repeatable.")] = None,
    reports: Annotated[Optional[list[str]], typer.Option("--reports", help="prune / probe / revive reports to merge, and eval reports under an attack (eval --shots, or eval of a model wrapcli quantize wrote); repeatable.")] = None,
    n: Annotated[int, typer.Option("--eval-size", min=1, help="Examples per built-in task.")] = 512,
    precision: Annotated[Optional[PrecisionName], typer.Option("--precision", help="fp32 (default), bf16 or fp16 (auto: bf16 on CUDA, fp32 on CPU): the dtype the models are loaded and run in (bf16 and fp16 halve a large model's memory).")] = None,
    dtype: Annotated[Optional[Literal["float32", "bfloat16", "float16"]], typer.Option("--dtype", hidden=True, help="The old name of --precision.")] = None,
    drop: Annotated[float, typer.Option("--drop", help="Accuracy fall that counts as suppressed (its interval must clear it).")] = Thresholds.drop,
    probe_margin: Annotated[float, typer.Option("--probe-margin", help="Probe accuracy above max(majority, best random init) that counts as decodable (lower end of the interval).")] = Thresholds.probe_margin,
    prune_gain: Annotated[float, typer.Option("--prune-gain", help="Pruned accuracy above max(unpruned, majority) that counts as restored (lower end of the interval).")] = Thresholds.prune_gain,
    revive_speedup: Annotated[float, typer.Option("--revive-speedup", help="Speed-up over the fastest control that counts as faster (lower end of the interval).")] = Thresholds.revive_speedup,
    min_seeds: Annotated[int, typer.Option("--min-seeds", help="reFT seeds a revive report needs before it counts for or against.")] = Thresholds.min_seeds,
    view: Annotated[Optional[list[str]], typer.Option("--view", help="FREE.jsonl=MC.jsonl: the free-form and multiple-choice records of one capability; the free-form verdict then weighs whether the model still picks the right choice above chance (repeatable).")] = None,
    view_margin: Annotated[float, typer.Option("--view-margin", help="--view: multiple-choice accuracy above chance that counts as still known (lower end of the interval).")] = Thresholds.view_margin,
    attack_margin: Annotated[float, typer.Option("--attack-margin", help="eval reports under an attack (--shots, or of a quantized model): held-out accuracy above the floor (records the base gets wrong, or chance) that counts as restored.")] = Thresholds.attack_margin,
    relearn_margin: Annotated[float, typer.Option("--relearn-margin", help="revive --data: held-out accuracy after relearning above the floor (chance, a control, or records the reference does not know) that counts as relearned.")] = Thresholds.relearn_margin,
    fail_on: Annotated[Optional[Literal["wrapped", "changed"]], typer.Option("--fail-on", help="wrapped or changed (anything not intact): exit 3 when a verdict matches.")] = None,
    markdown_out: Annotated[Optional[str], typer.Option("--markdown", help="Write a readable audit here.")] = None,
    fields: Fields = None,
    split: Split = None,
    template: Template = "raw",
    device: Device = "auto",
    device_map: DeviceMap = None,
    max_memory: MaxMemory = None,
    out: Out = None,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """What did fine-tuning change, where — and is the capability gone or only wrapped?"""
    from wrapcli.terminal.console import errors_as_exit, stderr
    from wrapcli.textdata.sources import is_record_file, reading

    with errors_as_exit(debug), reading(fields, split, template):
        from wrapcli.analyses import audit
        from wrapcli.core.errors import UsageError
        from wrapcli.core.files import check_format, check_outputs, write_text
        from wrapcli.core.runtime import DTYPES, placement, resolve_device, resolve_precision
        from wrapcli.report import envelope
        from wrapcli.runs import compare as run

        check_outputs(out, markdown_out, inputs=[*ckpts, *(reports or []), *(task or [])])
        check_format(out, "report", "-o")
        check_format(markdown_out, "markdown", "--markdown")
        if precision and dtype:
            raise UsageError("give --precision (or its old name --dtype), not both")
        th = Thresholds(drop, probe_margin, prune_gain, revive_speedup, min_seeds, relearn_margin, view_margin,
                        attack_margin)
        if task and all(is_record_file(t) for t in task):
            refuse_given(ctx, ("n",), "to built-in tasks; a JSONL task scores every record")
        device = resolve_device(device)
        old = {v: k for k, v in DTYPES.items()}.get(dtype or "")
        precision = resolve_precision(old or precision or "fp32", device, ("fp32", "bf16", "fp16"))
        dtype = DTYPES[precision]
        placed = placement(device_map, max_memory)
        result = run.compare(paths=ckpts, tasks=task or [], reports=reports or [], th=th, n=n,
                             dtype=dtype, device=device, placement=placed, views=view or [])
        con = stderr(quiet)
        for name, vs in result["verdicts"].items():
            for v in vs:
                con.print(f"{v['label'].upper()} {name}: {v['task']}: {v['reason']}")
                for c in v["criteria"]:
                    con.print(f"  {c['outcome']:>7} {c['kind']}: {c['text']}")
                if v["settle"]:
                    con.print(f"  to settle it: {'; '.join(v['settle'])}")
        for w in result["weights"]:
            changed = ", ".join(f"{k} {v['relative_change']:.3f}" for k, v in w["layers"].items())
            con.print(f"weights {w['a']} -> {w['b']}: relative change per layer: {changed or 'none'}")
        if markdown_out:
            write_text(markdown_out, audit.markdown(result))
        files = [t for t in task or [] if is_record_file(t)]
        files += [t for pair in result.get("views", []) for t in pair.values() if t not in files]
        inputs = list(ckpts) + list(reports or []) + files
        envelope.write(envelope.envelope("compare", result, inputs=inputs, device=device, precision=precision), out, json_out)
        labels = {v["label"] for vs in result["verdicts"].values() for v in vs}
        if (fail_on == "wrapped" and "wrapped" in labels) or (fail_on == "changed" and labels - {"intact"}):
            raise typer.Exit(3)
