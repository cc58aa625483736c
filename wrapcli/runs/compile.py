"""`wrapcli compile`: compile a RASP program with Tracr, check the torch model against
Tracr's own outputs, add the noise, evaluate and write the checkpoint with its lineage
(wrapcli/compiled/: the model and its compiling)."""

from __future__ import annotations

from wrapcli.core.errors import WrapError
from wrapcli.models.lineage import lineage_entry

CHECKED_INPUTS = 200  # random inputs the torch model must decode as Tracr does before it is written


def compile_checkpoint(*, program: str, out, max_len: int, noise: float, seed: int) -> dict:
    """Compile ``program`` and write it to ``out``; its shape for the command to print."""
    from wrapcli.compiled import compiling
    from wrapcli.compiled import model as compiled
    from wrapcli.models import checkpoint

    compiling.require_tracr()
    assembled, output_name = compiling.compile_program(program, max_len)
    model = compiling.to_torch(program, assembled, output_name, max_len)
    mismatches = agreement(model, assembled, CHECKED_INPUTS)
    if mismatches:
        raise WrapError(f"the torch model disagrees with Tracr on {mismatches} of {CHECKED_INPUTS} inputs (a wrapcli bug)")
    if noise:
        compiling.add_noise(model, noise, seed)
    # what the compiled program scores after the noise: revive's default threshold (0.9 x it)
    task = "count:a" if program == "counter" else None
    final = compiled.evaluate(model, 1000, seed=0, operand="a") if task else {}
    entry = lineage_entry("compile", None, task or program, seed, final, noise=noise, max_len=max_len)
    checkpoint.save_compiled(out, model, lineage=[entry])
    spec = model.spec
    return {"n_layers": spec.n_layers, "n_heads": spec.n_heads, "d_model": spec.d_model, "d_mlp": spec.d_mlp,
            "n_outputs": len(spec.output_values)}


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
