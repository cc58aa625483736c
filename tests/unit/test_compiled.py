"""Compiled (Tracr-architecture) models without Tracr: the torch forward pass against an
independent numpy one, the checkpoint round trip, and the refusals (compiled.py)."""

import json

import numpy as np
import pytest
import torch

from wrapcli import checkpoint, compiled
from wrapcli.errors import WrapError

LABELS = ["count_a:0", "count_a:1", "count_a:2", "count_a:3", "count_a:4", "one", "tokens:BOS", "tokens:a",
          "tokens:b", "tokens:c", "tokens:compiler_pad"]
SPEC = compiled.CompiledSpec(
    program="counter", n_layers=2, n_heads=2, d_head=3, d_mlp=7, d_model=len(LABELS), max_len=4, causal=False,
    input_vocab=["BOS", "a", "b", "c", "compiler_pad"], bos="BOS", pad="compiler_pad", output_name="count_a",
    output_values=[0, 1, 2, 3, 4], residual_labels=LABELS)


def random_model(seed=0):
    torch.manual_seed(seed)
    model = compiled.build(SPEC)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape))
    return model.eval()


def numpy_forward(model, ids):
    """Tracr's architecture written out in numpy, weights read from the state dict."""
    w = {k: v.numpy().astype(np.float64) for k, v in model.state_dict().items()}
    B, T = ids.shape
    x = w["token_embed.weight"][ids] + w["pos_embed.weight"][np.arange(T)]
    keep = ids != SPEC.input_vocab.index(SPEC.pad)  # (B, T) keys that may be attended
    for l in range(SPEC.n_layers):
        p = lambda name, h: h @ w[f"layers.{l}.{name}.weight"].T + w[f"layers.{l}.{name}.bias"]  # noqa: E731
        heads = []
        for h in range(SPEC.n_heads):
            cols = slice(h * SPEC.d_head, (h + 1) * SPEC.d_head)
            q, k, v = (p(f"attn.{n}", x)[..., cols] for n in ("query", "key", "value"))
            logits = np.einsum("btd,bsd->bts", q, k) / np.sqrt(SPEC.d_head)
            logits = np.where(keep[:, None, :], logits, -1e30)
            att = np.exp(logits - logits.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            heads.append(att @ v)
        x = x + p("attn.linear", np.concatenate(heads, -1))
        x = x + p("mlp.linear_2", np.maximum(p("mlp.linear_1", x), 0))
    readout = np.array([[1.0 if lab == f"count_a:{v}" else 0.0 for lab in LABELS] for v in SPEC.output_values])
    return x @ readout.T


def test_the_forward_pass_is_tracrs_architecture_written_out_by_hand():
    model = random_model()
    ids = np.array([[0, 1, 2, 3, 1], [0, 2, 2, 4, 4]])  # the second row ends in padding
    with torch.no_grad():
        ours = model(torch.as_tensor(ids)).double().numpy()
    ref = numpy_forward(model, ids)
    assert np.abs(ours - ref).max() <= 1e-6 * np.abs(ref).max()  # float32 rounding of float64


def test_the_unembedding_is_rebuilt_from_the_labels():
    u = SPEC.unembedding()
    assert u.shape == (5, len(LABELS)) and (u.sum(1) == 1).all()
    assert [LABELS[j] for j in u.argmax(1)] == [f"count_a:{v}" for v in range(5)]
    with pytest.raises(WrapError, match="no dimension 'count_a:9'"):
        compiled.CompiledSpec(**{**SPEC.__dict__, "output_values": [0, 9]}).unembedding()


def test_a_compiled_checkpoint_round_trips_and_other_commands_refuse_it(tmp_path):
    model = random_model()
    path = tmp_path / "c.safetensors"
    checkpoint.save_compiled(path, model, lineage=[{"kind": "compile"}])
    back = checkpoint.load_compiled(path)
    ids = torch.as_tensor(compiled.encode(SPEC, compiled.sample_inputs(SPEC, 50, 0)))
    assert torch.equal(back(ids), model(ids))
    assert json.loads(checkpoint.read_metadata(path)["compiled"])["residual_labels"] == LABELS
    with pytest.raises(WrapError, match="compiled \\(Tracr\\) model, not a Hugging Face architecture"):
        checkpoint.load(path)


def test_a_tensor_that_contradicts_the_spec_is_refused(tmp_path):
    from safetensors.torch import save_file

    model = random_model()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors["layers.1.mlp.linear_1.weight"] = torch.zeros(3, len(LABELS))
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "compiled": SPEC.to_json()})
    with pytest.raises(WrapError, match="layers.1.mlp.linear_1.weight is \\(3, 11\\), the compiled spec implies \\(7, 11\\)"):
        checkpoint.load_compiled(path)


def test_the_evaluation_scores_against_brute_force_counts():
    model = random_model(1)
    score = compiled.evaluate(model, 300, seed=4)["compiled:counter"]["natural"]
    inputs = compiled.sample_inputs(SPEC, 300, 4)
    ids = compiled.encode(SPEC, inputs)
    predicted = numpy_forward(model, ids)[:, -1].argmax(-1)
    truth = [sum(v == "a" for v in row) for row in inputs]
    assert score["n"] == 300 and score["accuracy"] == pytest.approx(np.mean(predicted == np.array(truth)))
    assert sum(s["n"] for s in score["per_answer"].values()) == 300
    assert score["ci95"][0] <= score["accuracy"] <= score["ci95"][1]


def test_compile_without_the_extra_is_a_one_line_error(monkeypatch, tmp_path):
    import sys

    from cli import one_line_error, run

    monkeypatch.setitem(sys.modules, "tracr", None)  # as if the compile extra were not installed
    monkeypatch.setitem(sys.modules, "tracr.compiler", None)
    out = tmp_path / "c.safetensors"
    one_line_error(run("compile", "counter", "-o", out, code=1), "pip install 'wrapcli[compile]'")
    assert not out.exists()


@pytest.mark.parametrize("fraction", [0.0, 0.25, 1.0])
def test_the_spurious_feature_is_in_exactly_the_asked_share_of_inputs(fraction):
    rows = compiled.counter_inputs(SPEC, 96, np.random.default_rng(0), fraction)
    holds = [row.count("b") == row.count("a") + 1 for row in rows]
    assert len(rows) == 96 and sum(holds) == round(fraction * 96)
    assert all(len(row) == SPEC.max_len and set(row) <= {"a", "b", "c"} for row in rows)


def test_a_counter_is_scored_on_each_setting_against_brute_force():
    model = random_model(2)
    scores = compiled.evaluate(model, 200, seed=1, operand="b", settings=compiled.SETTINGS)["count:b"]
    assert set(scores) == set(compiled.SETTINGS) and all(s["n"] == 200 for s in scores.values())
    with pytest.raises(Exception, match="count:z is not a task"):
        compiled.evaluate(model, 10, operand="z")
