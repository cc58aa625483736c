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
        from wrapcli.compiled import compiling
        from wrapcli.compiled import model as compiled
        from wrapcli.core.errors import UsageError, WrapError
        from wrapcli.core.files import check_format, check_outputs
        from wrapcli.models import checkpoint
        from wrapcli.models.checkpoint import lineage_entry

        if out is None or out == "-":
            raise UsageError("give the checkpoint to write with -o FILE.safetensors")
        check_outputs(out)
        check_format(out, "checkpoint", "-o")
        compiling.require_tracr()
        assembled, output_name = compiling.compile_program(program, max_len)
        model = compiling.to_torch(program, assembled, output_name, max_len)
        mismatches = agreement(model, assembled, 200)
        if mismatches:
            raise WrapError(f"the torch model disagrees with Tracr on {mismatches} of 200 inputs (a wrapcli bug)")
        if noise:
            compiling.add_noise(model, noise, seed)
        # what the compiled program scores after the noise: revive's default threshold (0.9 x it)
        task = "count:a" if program == "counter" else None
        final = compiled.evaluate(model, 1000, seed=0, operand="a") if task else {}
        entry = lineage_entry("compile", None, task or program, seed, final, noise=noise, max_len=max_len)
        checkpoint.save_compiled(out, model, lineage=[entry])
        spec = model.spec
        stderr(quiet).print(f"wrote {out}: {spec.n_layers} layers, {spec.n_heads} head(s), width {spec.d_model}, "
                            f"MLP {spec.d_mlp}, {len(spec.output_values)} output values"
                            + (f", noise N(0, {noise:g})" if noise else ""))


def agreement(model, assembled, n: int) -> int:
    """Inputs (of ``n`` random ones) on which the torch model's decoded outputs differ
    from Tracr's."""
    import torch

    from wrapcli.compiled import compiling
    from wrapcli.compiled import model as compiled

    inputs = compiled.sample_inputs(model.spec, n, seed=12345)
    _, decoded = compiling.tracr_outputs(assembled, inputs)
    with torch.inference_mode():
        ours = model(torch.as_tensor(compiled.encode(model.spec, inputs)))[:, 1:].argmax(-1)
    values = model.spec.output_values
    return sum([values[i] for i in row] != want for row, want in zip(ours.tolist(), decoded))
