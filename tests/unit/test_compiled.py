"""Compiled (Tracr-architecture) models without Tracr: the torch forward pass against an
independent numpy one, the checkpoint round trip, and the refusals (compiled/model.py); the
attention read at the answer position against the numpy pass, weight saliency against
finite differences, and the SGD fine-tune (compiled/training.py)."""

import json

import numpy as np
import pytest
import torch

from wrapcli.compiled import model as compiled
from wrapcli.core.errors import WrapError
from wrapcli.models import checkpoint

from models import COMPILED_LABELS as LABELS
from models import COMPILED_SPEC as SPEC
from models import tiny_compiled as random_model


def numpy_forward(model, ids, atts=None):
    """Tracr's architecture written out in numpy, weights read from the state dict; each
    layer's (B, H, T, T) attention weights are appended to ``atts`` if given."""
    w = {k: v.numpy().astype(np.float64) for k, v in model.state_dict().items()}
    B, T = ids.shape
    x = w["token_embed.weight"][ids] + w["pos_embed.weight"][np.arange(T)]
    keep = ids != SPEC.input_vocab.index(SPEC.pad)  # (B, T) keys that may be attended
    for l in range(SPEC.n_layers):
        p = lambda name, h: h @ w[f"layers.{l}.{name}.weight"].T + w[f"layers.{l}.{name}.bias"]  # noqa: E731
        heads, layer_atts = [], []
        for h in range(SPEC.n_heads):
            cols = slice(h * SPEC.d_head, (h + 1) * SPEC.d_head)
            q, k, v = (p(f"attn.{n}", x)[..., cols] for n in ("query", "key", "value"))
            logits = np.einsum("btd,bsd->bts", q, k) / np.sqrt(SPEC.d_head)
            logits = np.where(keep[:, None, :], logits, -1e30)
            att = np.exp(logits - logits.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            heads.append(att @ v)
            layer_atts.append(att)
        if atts is not None:
            atts.append(np.stack(layer_atts, 1))
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
    back = compiled.load_checkpoint(path)
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
        compiled.load_checkpoint(path)


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


# -- fine-tuning, pruning and reading them (compiled/training.py) ----------------------
def test_attention_at_the_answer_position_against_the_numpy_forward():
    from wrapcli.compiled import training as ct

    model = random_model(3)
    ids = compiled.counter_ids(SPEC, 64, np.random.default_rng(0), None)
    atts = []
    numpy_forward(model, ids, atts)
    rows = ct.attention_at_answer(model, ids)
    assert [(r["layer"], r["head"]) for r in rows] == [(l, h) for l in range(2) for h in range(2)]
    for r in rows:
        last = atts[r["layer"]][:, r["head"], -1]  # (B, T) from the last position
        for tok in ("BOS", "a", "b", "c"):
            want = (last * (ids == SPEC.input_vocab.index(tok))).sum(1).mean()
            assert r[tok] == pytest.approx(want, abs=1e-5)
        assert sum(r[t] for t in ("BOS", "a", "b", "c")) == pytest.approx(1.0, abs=1e-5)  # no padding here


def test_weight_saliency_is_weight_times_a_finite_difference_gradient():
    from wrapcli.compiled import training as ct

    model = random_model(4).double()
    units = ct.saliency(model, "a", 50, seed=0)
    assert len(units) == sum(p.numel() for p in model.parameters())  # every weight, the readout excluded
    assert [u["score"] for u in units] == sorted((u["score"] for u in units), reverse=True)
    ids = compiled.counter_ids(SPEC, 50, np.random.default_rng([0, 2]), None)  # the inputs saliency scores on
    params = dict(model.named_parameters())
    for u in units[:3] + units[-2:]:
        w = params[u["param"]].view(-1)
        with torch.no_grad():
            old, eps = float(w[u["index"]]), 1e-6
            w[u["index"]] = old + eps
            up = float(ct.answer_loss(model, ids, "a"))
            w[u["index"]] = old - eps
            down = float(ct.answer_loss(model, ids, "a"))
            w[u["index"]] = old
        assert u["score"] == pytest.approx(old * (up - down) / (2 * eps), rel=1e-4, abs=1e-8)


def test_zeroing_the_top_weights_sets_exactly_those_to_zero():
    from wrapcli.compiled import training as ct

    model = random_model(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    units = ct.saliency(model, "a", 30, seed=1)[:3]
    ct.zero(model, units)
    changed = {(k, i) for k, v in model.state_dict().items()
               for i in torch.nonzero((v != before[k]).flatten()).flatten().tolist()}
    assert changed == {(u["param"], u["index"]) for u in units}
    from wrapcli.models.adapters import layer_of

    assert layer_of("layers.1.mlp.linear_1.weight", -1) == 1 and layer_of("token_embed.weight", -1) == -1
    assert layer_of("model.layers.12.self_attn.q_proj.weight") == 12 and layer_of("transformer.wte.weight") is None


def test_sgd_fine_tuning_is_deterministic_and_lowers_the_loss():
    from wrapcli.compiled import training as ct

    recipe = ct.Recipe(steps=150, batch_size=32, lr=0.05)
    runs = []
    for _ in range(2):
        model = random_model(6)
        losses = ct.train(model, "b", recipe, seed=3, spurious=0.5)
        runs.append((losses, model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())
    assert np.mean(runs[0][0][-30:]) < np.mean(runs[0][0][:30])
    with pytest.raises(Exception, match="--lr"):
        ct.resolve_lr("fast")
    assert ct.resolve_lr("small") == (1e-4, "small") and ct.resolve_lr("0.1") == (0.1, None)


def test_counter_batches_hold_the_feature_in_exactly_the_asked_share():
    ids = compiled.counter_ids(SPEC, 200, np.random.default_rng(1), 0.3)
    a, b = (ids == 1).sum(1), (ids == 2).sum(1)
    assert ids.shape == (200, 1 + SPEC.max_len) and (ids[:, 0] == 0).all() and set(ids[:, 1:].flatten()) <= {1, 2, 3}
    assert (b == a + 1).sum() == 60


def test_residual_features_are_the_embedding_and_each_blocks_output_at_the_last_position():
    from wrapcli.compiled import training as ct

    model = random_model(7)
    ids = compiled.counter_ids(SPEC, 16, np.random.default_rng(2), None)
    feats = ct.residual_features(model, ids)
    w = {k: v.numpy() for k, v in model.state_dict().items()}
    assert len(feats) == 1 + SPEC.n_layers
    np.testing.assert_allclose(feats[0], w["token_embed.weight"][ids[:, -1]] + w["pos_embed.weight"][ids.shape[1] - 1], rtol=1e-6)
    with torch.no_grad():
        logits = model(torch.as_tensor(ids))[:, -1].numpy()
    np.testing.assert_allclose(feats[-1] @ SPEC.unembedding().T, logits, rtol=1e-5, atol=1e-5)


def test_pruning_a_neuron_equals_ablating_its_hidden_unit_and_scores_its_column():
    from wrapcli.compiled import training as ct

    model = random_model(8)
    weights = {(u["param"], u["index"]): u["score"] for u in ct.saliency(model, "a", 40, seed=3)}
    neurons = ct.saliency(model, "a", 40, seed=3, unit="neuron")
    assert len(neurons) == SPEC.n_layers * SPEC.d_mlp
    for u in neurons[:3]:  # a neuron's score is the sum of its column's weight scores
        column = [weights[(u["param"], r * SPEC.d_mlp + u["index"])] for r in range(SPEC.d_model)]
        assert u["score"] == pytest.approx(sum(column), rel=1e-4, abs=1e-7)
    top = neurons[0]
    layer = int(top["param"].split(".")[1])
    ids = torch.as_tensor(compiled.counter_ids(SPEC, 20, np.random.default_rng(4), None))
    mlp = model.layers[layer].mlp
    hook = mlp.linear_1.register_forward_hook(  # the ablation: the hidden unit's pre-activation set to 0
        lambda m, inp, out: out.index_fill(-1, torch.tensor([top["index"]]), 0.0)
    )
    with torch.no_grad():
        ablated = model(ids)
    hook.remove()
    ct.zero(model, [top])
    with torch.no_grad():
        pruned = model(ids)
    assert torch.allclose(ablated, pruned, atol=1e-5)
