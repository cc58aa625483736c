"""Weight x gradient scores against a hand computation and against real ablations."""

import pytest
import torch
from scipy.stats import spearmanr

from wrapcli.adapters import Adapter
from wrapcli.errors import WrapError
from wrapcli.pruning import compute_scores, sweep, zero

from models import tiny_hf

ARCHS = ["gpt2", "llama", "gpt_neox"]
# where each family keeps its output projections, written out independently of adapters.py
PROJ = {
    "gpt2": lambda m, l: (m.transformer.h[l].mlp.c_proj.weight, m.transformer.h[l].attn.c_proj.weight, 0),
    "llama": lambda m, l: (m.model.layers[l].mlp.down_proj.weight, m.model.layers[l].self_attn.o_proj.weight, 1),
    "gpt_neox": lambda m, l: (m.gpt_neox.layers[l].mlp.dense_4h_to_h.weight, m.gpt_neox.layers[l].attention.dense.weight, 1),
}


def batch(vocab=100, seed=0):
    return torch.randint(0, vocab, (8, 12), generator=torch.Generator().manual_seed(seed))


def lm_loss(model, x):
    return model(input_ids=x, labels=x).loss


@pytest.mark.parametrize("arch", ARCHS)
def test_scores_equal_hand_computed_weight_times_gradient(arch):
    model = tiny_hf(arch).eval()
    x = batch()
    mats = [w for l in range(2) for w in PROJ[arch](model, l)[:2]]
    grads = torch.autograd.grad(lm_loss(model, x), mats)
    adapter = Adapter(model)
    head_dim = 16
    for kind in ("neuron", "head"):
        got = {(u.layer, u.index): u.score for u in compute_scores(adapter, [x], lm_loss, kind)}
        for l in range(2):
            w_mlp, w_attn, in_axis = PROJ[arch](model, l)
            g_mlp, g_attn = grads[2 * l], grads[2 * l + 1]
            w, g = (w_mlp, g_mlp) if kind == "neuron" else (w_attn, g_attn)
            n = w.shape[in_axis] if kind == "neuron" else 2
            for i in range(n):
                sl = slice(i, i + 1) if kind == "neuron" else slice(i * head_dim, (i + 1) * head_dim)
                ww, gg = (w[sl, :], g[sl, :]) if in_axis == 0 else (w[:, sl], g[:, sl])
                assert got[(l, i)] == pytest.approx((ww * gg).sum().item(), rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
def test_first_order_scores_rank_like_real_ablations(arch):
    """Zero each neuron for real and measure the loss drop; the first-order estimates
    must rank-correlate with it."""
    model = tiny_hf(arch).eval()
    x = batch(seed=1)
    adapter = Adapter(model)
    units = compute_scores(adapter, [x], lm_loss, "neuron")
    with torch.no_grad():
        base = lm_loss(model, x).item()
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    estimated, actual = [], []
    for u in units[:: max(1, len(units) // 64)]:
        zero(adapter, u)
        with torch.no_grad():
            actual.append(base - lm_loss(model, x).item())
        estimated.append(u.score)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(saved[n])
    rho = spearmanr(estimated, actual).statistic
    assert rho > 0.8, rho


def test_sweep_restores_weights_and_is_monotone_in_units():
    model = tiny_hf("gpt2")
    x = batch()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapter = Adapter(model)

    def evaluate_fn(m):
        with torch.no_grad():
            return {"loss": lm_loss(m, x).item()}

    order, rows = sweep(adapter, [0, 1, 3], "head", [x], lm_loss, evaluate_fn)
    assert [r["k"] for r in rows] == [0, 1, 3] and len(order) == 3
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    it_order, _ = sweep(adapter, [0, 2, 4], "head", [x], lm_loss, evaluate_fn, iterative=True)
    assert len({(u.layer, u.index) for u in it_order}) == 4  # distinct units
    with pytest.raises(WrapError, match="more than the 4 head units"):
        sweep(adapter, [5], "head", [x], lm_loss, evaluate_fn)


def test_weight_units_are_single_weights():
    model = tiny_hf("llama")
    adapter = Adapter(model)
    x = batch()
    order, rows = sweep(adapter, [0, 3], "weight", [x], lm_loss, lambda m: {})
    assert all(u.kind.startswith("weight:") for u in order)
    assert order[0].score >= order[1].score >= order[2].score


def test_unknown_architecture():
    from transformers import OPTConfig, OPTForCausalLM

    model = OPTForCausalLM(OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                                     num_attention_heads=2, max_position_embeddings=32, word_embed_proj_dim=16))
    with pytest.raises(WrapError, match="unsupported architecture 'opt'"):
        Adapter(model)


def test_micro_batched_scoring_equals_one_batch(tmp_path, monkeypatch):
    """User records scored in micro-batches of a few tokens give the units the same
    weight x gradient scores as one batch holding every record."""
    from models import PAIRS, make_model_dir, write_jsonl

    from wrapcli.runs import prune as run

    model_dir = make_model_dir(tmp_path / "hf", "llama")
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v} {w}"} for w, v in PAIRS.items()])

    def scores(limit):
        monkeypatch.setattr(run, "MAX_SCORING_TOKENS", limit)
        res = run.prune(ckpt_path=model_dir, data=data, kind="neuron", ks=(0, 20), batch_size=8, eval_size=8)
        return {(u["layer"], u["index"]): u["score"] for u in res["pruned"]}, res

    whole, _ = scores(10**6)
    split, _ = scores(8)  # records of 5 tokens: one record per micro-batch
    assert whole.keys() == split.keys() and len(whole) == 20
    for key in whole:
        assert split[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-7)
