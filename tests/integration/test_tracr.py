"""Compiled checkpoints against Tracr itself (needs the compile extra; skipped without it):
on 1,000 random inputs per program the torch model's decoded outputs equal Tracr's, and
its final residual stream equals Tracr's to float32 rounding."""

import numpy as np
import pytest
import torch

from cli import one_line_error, run

pytest.importorskip("tracr", reason="needs the compile extra: pip install 'wrapcli[compile]'")

from wrapcli.compiled import compiling  # noqa: E402
from wrapcli.compiled import model as compiled

ATOL = 1e-4  # float32 rounding over a few layers of large compiled weights


@pytest.mark.parametrize("program", ["counter", "max-id"])
def test_the_torch_model_computes_what_tracr_computes(tmp_path, program):
    out = tmp_path / f"{program}.safetensors"
    run("compile", program, "--max-len", "8", "-o", out)
    model = compiled.load_checkpoint(out)
    assembled, _ = compiling.compile_program(program, 8)
    inputs = compiled.sample_inputs(model.spec, 1000, seed=7)
    residual, decoded = compiling.tracr_outputs(assembled, inputs)
    with torch.inference_mode():
        logits, stream = model(torch.as_tensor(compiled.encode(model.spec, inputs)), residuals=True)
    ours = [[model.spec.output_values[i] for i in row] for row in logits[:, 1:].argmax(-1).tolist()]
    assert ours == decoded
    assert np.abs(stream[-1].numpy() - residual).max() < ATOL
    truth = [compiled.target(model.spec, row) for row in inputs]
    assert [row[-1] for row in decoded] == truth  # and Tracr computes the program


def test_noise_moves_every_weight_but_not_the_readout(tmp_path):
    clean, noisy = tmp_path / "c.safetensors", tmp_path / "n.safetensors"
    run("compile", "counter", "--max-len", "6", "-o", clean)
    run("compile", "counter", "--max-len", "6", "--noise", "0.001", "--seed", "3", "-o", noisy)
    a, b = compiled.load_checkpoint(clean).state_dict(), compiled.load_checkpoint(noisy).state_dict()
    assert torch.equal(a["unembed"], b["unembed"])
    moved = [k for k in a if k != "unembed" and not torch.equal(a[k], b[k])]
    assert len(moved) == len(a) - 1
    assert 0.0005 < float((b["layers.0.mlp.linear_1.weight"] - a["layers.0.mlp.linear_1.weight"]).std()) < 0.002


def test_export_refuses_a_compiled_model(tmp_path):
    out = tmp_path / "c.safetensors"
    run("compile", "counter", "--max-len", "6", "-o", out)
    one_line_error(run("export", out, tmp_path / "hf", code=1), "not a Hugging Face architecture")
    one_line_error(run("eval", out, "--conjugate", "a:c,c:a", code=2), "--conjugate is for the built-in tasks", code=2)


def test_eval_scores_a_compiled_counter_on_each_setting(tmp_path):
    import json

    out, report = tmp_path / "c.safetensors", tmp_path / "e.json"
    run("compile", "counter", "--max-len", "8", "-o", out)
    run("eval", out, "--task", "count:a", "--task", "count:b", "--eval-size", "300", "-o", report)
    tasks = json.loads(report.read_text())["results"]["tasks"]
    assert {s: r["accuracy"] for s, r in tasks["count:a"].items()} == {"natural": 1.0, "C_Te=0": 1.0, "C_Te=1": 1.0}
    assert tasks["count:b"]["C_Te=1"]["accuracy"] == 0.0  # it counts a, and there b = a + 1
