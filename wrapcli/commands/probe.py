"""``wrapcli probe``: per-layer linear probes (docs/protocol.md "Probing").

Report ``results``: documented key by key in docs/reports.md (wrapcli/report/schema.py). Per
residual-stream point (``layer`` -1 = ``hook_embed``, then ``blocks.{l}.hook_resid_post``):
held-out ``accuracy`` with ``n`` and ``ci95``, the majority baseline, the best of
``--random-inits`` randomly initialised models, the probe's margin over the higher of
that and the majority (paired bootstrap interval over the held-out rows), and the
``--reference`` model's accuracy; attention from ``<ans>`` onto a, b, c.
"""

from __future__ import annotations

from typing import Annotated, Optional

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
    Seed,
    Split,
    Template,
)

SUMMARY = "Is the capability still linearly decodable, layer by layer?"  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli probe ft.safetensors --target count:a --reference pt.safetensors -o probe.json

  wrapcli probe ft.safetensors --target count:a --prompt count:b   # count(a) on count:b prompts

  wrapcli probe my-model/ --data twist.jsonl --position mean-last-10 -o probe.json

  wrapcli probe counter-ft.safetensors --target count:a --reference counter.safetensors   # compiled
"""


def probe(
    ckpt: Annotated[str, typer.Argument(help="Checkpoint to probe (.safetensors or HF directory).")],
    target: Annotated[Optional[str], typer.Option("--target", help="What to decode, e.g. count:a (its answer on each text).")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Prompt with this task instead of the target's own, e.g. count:b.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="JSONL of {text, label[, group]} instead of a built-in task (HF directory with tokenizer); records of one group stay on one side of the split.")] = None,
    position: Annotated[str, typer.Option("--position", help="With --data: last or mean-last-K (the paper's TinyStories probes: mean-last-10).")] = "last",
    n: Annotated[int, typer.Option("--eval-size", help="Examples to probe (75% fit, 25% held out).")] = 2000,
    lens: Annotated[Optional[str], typer.Option("--lens", help="Prompt/answer or multiple-choice JSONL: also read the answer out of every layer through the final norm and unembedding (the logit lens), for the model and --reference; on a Hugging Face directory without --data, the lens alone.")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="Probe this checkpoint too (e.g. the pretrained model).")] = None,
    attention: Annotated[bool, typer.Option("--attention/--no-attention", help="Summarise attention from <ans> onto a, b, c.")] = True,
    random_inits: Annotated[int, typer.Option("--random-inits", help="Randomly initialised models to probe as the baseline (the best of them per layer is the bar).")] = 3,
    seed: Seed = 0,
    fields: Fields = None,
    split: Split = None,
    template: Template = "raw",
    device: Device = "auto",
    device_map: DeviceMap = None,
    max_memory: MaxMemory = None,
    precision: Annotated[PrecisionName, typer.Option("--precision", help="fp32 (default), bf16 or fp16 (auto: bf16 on CUDA, fp32 on CPU): the dtype the weights (and random-init baselines) are loaded and kept in; bf16 and fp16 halve the memory, the features round differently.")] = "fp32",
    out: Out = None,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Is the capability still linearly decodable, layer by layer?"""
    from wrapcli.terminal.console import errors_as_exit, stderr
    from wrapcli.textdata.sources import reading

    with errors_as_exit(debug), reading(fields, split, template):
        from wrapcli.core.errors import UsageError
        from wrapcli.core.files import check_format, check_outputs
        from wrapcli.core.runtime import resolve_device
        from wrapcli.report import envelope as reports
        from wrapcli.runs import probe as run
        from wrapcli.terminal import tables

        if n < 8:
            raise UsageError(f"--eval-size must be >= 8, got {n}")
        check_outputs(out, inputs=[ckpt, reference, data, lens])
        check_format(out, "report", "-o")
        if data is not None and (target or prompt):
            raise UsageError("--target and --prompt are for built-in tasks; with --data the labels are the records' own")
        if data is None and position != "last":
            raise UsageError("--position goes with --data")
        device = resolve_device(device)
        from wrapcli.core.runtime import placement, resolve_precision

        precision = resolve_precision(precision, device, ("fp32", "bf16", "fp16"))
        placed = placement(device_map, max_memory)
        result = run.probe(ckpt_path=ckpt, target=target, prompt=prompt, data=data, position=position,
                               n=n, reference=reference, seed=seed, device=device, attention=attention,
                               random_inits=random_inits, precision=precision, placement=placed, lens=lens)
        con = stderr(quiet)
        if result["layers"]:
            con.print(tables.layer_table(result))
        if result.get("lens"):
            con.print(tables.lens_table(result["lens"]))
        if result.get("attention"):
            con.print(tables.attention_table(result["attention"]["model"]))
        inputs = [ckpt] + ([reference] if reference else []) + ([data] if data else []) + ([lens] if lens else [])
        reports.write(reports.envelope("probe", result, inputs=inputs, seed=seed, device=result["device"],
                                       precision=precision), out, json_out)


