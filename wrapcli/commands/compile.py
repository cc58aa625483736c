"""``wrapcli compile``: one of the paper's RASP programs, compiled by Tracr, as a wrapcli
checkpoint (needs the ``compile`` extra only to make it, never to use it)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from wrapcli.commands._options import Debug, Out, Quiet

SUMMARY = "Compile a RASP program with Tracr into a checkpoint the other commands read."  # its line in wrapcli --help
EXAMPLE = """Example:

  pip install 'wrapcli[compile]'
  wrapcli compile counter -o counter.safetensors
  wrapcli eval counter.safetensors --eval-size 1000 -o counter_eval.json
  wrapcli compile max-id --noise 0.001 --seed 1 -o maxid.safetensors
"""


def compile_(
    program: Annotated[Literal["counter", "max-id"], typer.Argument(help="counter (count of a) or max-id (5th largest value).")],
    out: Out = None,
    max_len: Annotated[int, typer.Option("--max-len", min=5, max=64, help="Input values per sequence (after BOS).")] = 10,
    noise: Annotated[float, typer.Option("--noise", min=0.0, help="Std of Gaussian noise added to every weight (the paper: 0.001 before fine-tuning).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the noise.")] = 0,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Compile a RASP program with Tracr (no normalisation, non-causal attention, ReLU
    MLPs) and save its weights, residual labels and encoders as a .safetensors checkpoint,
    checked on 200 random inputs against Tracr's own outputs before it is written."""
    from wrapcli.terminal.console import errors_as_exit, stderr

    with errors_as_exit(debug):
        from wrapcli.core.errors import UsageError
        from wrapcli.core.files import check_format, check_outputs
        from wrapcli.runs.compile import compile_checkpoint

        if out is None or out == "-":
            raise UsageError("give the checkpoint to write with -o FILE.safetensors")
        check_outputs(out)
        check_format(out, "checkpoint", "-o")
        shape = compile_checkpoint(program=program, out=out, max_len=max_len, noise=noise, seed=seed)
        stderr(quiet).print(f"wrote {out}: {shape['n_layers']} layers, {shape['n_heads']} head(s), width "
                            f"{shape['d_model']}, MLP {shape['d_mlp']}, {shape['n_outputs']} output values"
                            + (f", noise N(0, {noise:g})" if noise else ""))
