"""Weight x gradient scores against a hand computation and against real ablations."""

import pytest
import torch
from scipy.stats import spearmanr

from wrapcli.analyses.pruning import compute_scores, sweep, zero
from wrapcli.core.errors import WrapError
from wrapcli.models.adapters import Adapter

from models import archs, tiny_hf

# where each family keeps its output projections, written out independently of adapters.py
PROJ = {
    "gpt2": lambda m, l: (m.transformer.h[l].mlp.c_proj.weight, m.transformer.h[l].attn.c_proj.weight, 0),
    "llama": lambda m, l: (m.model.layers[l].mlp.down_proj.weight, m.model.layers[l].self_attn.o_proj.weight, 1),
    "gpt_neox": lambda m, l: (m.gpt_neox.layers[l].mlp.dense_4h_to_h.weight, m.gpt_neox.layers[l].attention.dense.weight, 1),
}
PROJ["mistral"] = PROJ["qwen2"] = PROJ["llama"]  # the same module names


def batch(vocab=100, seed=0):
    return torch.randint(0, vocab, (8, 12), generator=torch.Generator().manual_seed(seed))


def lm_loss(model, x):
    return model(input_ids=x, labels=x).loss


@pytest.mark.parametrize("arch", archs())
def test_scores_equal_hand_computed_weight_times_gradient(arch):
    model = tiny_hf(arch).eval()
    x = batch()
    mats = [w for l in range(2) for w in PROJ[arch](model, l)[:2]]
    grads = torch.autograd.grad(lm_loss(model, x), mats)
    adapter = Adapter(model)
    n_heads = model.config.num_attention_heads if arch != "gpt2" else model.config.n_head
    head_dim = model.config.hidden_size // n_heads
    for kind in ("neuron", "head"):
        got = {(u.layer, u.index): u.score for u in compute_scores(adapter, [x], lm_loss, kind)}
        for l in range(2):
            w_mlp, w_attn, in_axis = PROJ[arch](model, l)
            g_mlp, g_attn = grads[2 * l], grads[2 * l + 1]
            w, g = (w_mlp, g_mlp) if kind == "neuron" else (w_attn, g_attn)
            n = w.shape[in_axis] if kind == "neuron" else n_heads
            for i in range(n):
                sl = slice(i, i + 1) if kind == "neuron" else slice(i * head_dim, (i + 1) * head_dim)
                ww, gg = (w[sl, :], g[sl, :]) if in_axis == 0 else (w[:, sl], g[:, sl])
                assert got[(l, i)] == pytest.approx((ww * gg).sum().item(), rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("arch", archs())
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
    from wrapcli.runs import prune as run

    from models import PAIRS, make_model_dir, write_jsonl

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


# every linear map of block 1, written out independently of adapters.py: (module, output axis)
ROWS = {
    "gpt2": lambda m: [(m.transformer.h[1].attn.c_attn, 1), (m.transformer.h[1].attn.c_proj, 1),
                       (m.transformer.h[1].mlp.c_fc, 1), (m.transformer.h[1].mlp.c_proj, 1)],
    "llama": lambda m: [(getattr(m.model.layers[1].self_attn, n), 0) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
                       + [(getattr(m.model.layers[1].mlp, n), 0) for n in ("gate_proj", "up_proj", "down_proj")],
    "gpt_neox": lambda m: [(m.gpt_neox.layers[1].attention.query_key_value, 0), (m.gpt_neox.layers[1].attention.dense, 0),
                           (m.gpt_neox.layers[1].mlp.dense_h_to_4h, 0), (m.gpt_neox.layers[1].mlp.dense_4h_to_h, 0)],
}
ROWS["mistral"] = ROWS["qwen2"] = ROWS["llama"]


def lm_loss64(model, x):
    """Next-token loss in the model's own dtype (Hugging Face's upcasts to float32)."""
    logits = model(input_ids=x).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


def scaled_output(module, feature: int, alpha: float):
    """A forward hook that scales one output feature's weight part by alpha (its bias stays):
    alpha = 0 is the row zeroed, without touching a weight."""
    def hook(mod, args, out):
        bias = 0 if mod.bias is None else mod.bias[feature]
        out = out.clone()
        out[..., feature] = bias + alpha * (out[..., feature] - bias)
        return out
    return module.register_forward_hook(hook)


@pytest.mark.parametrize("arch", archs())
def test_row_scores_equal_hand_computed_weight_times_gradient(arch):
    model = tiny_hf(arch).eval()
    x = batch(seed=3)
    mods = ROWS[arch](model)
    grads = torch.autograd.grad(lm_loss(model, x), [m.weight for m, _ in mods])
    got = {}
    for u in compute_scores(Adapter(model), [x], lm_loss, "row"):
        if u.layer == 1:
            got.setdefault(u.kind, {})[u.index] = u.score
    names = {id(m): n for n, m, _ in Adapter(model).linears(1)}
    for (m, axis), g in zip(mods, grads):
        want = (m.weight.detach() * g).sum(1 - axis)
        scores = got[f"row:{names[id(m)]}"]
        assert [scores[i] for i in range(len(want))] == pytest.approx(want.tolist(), rel=1e-4, abs=1e-9)


# Llama's RMSNorm and rotary tables compute in float32 even in a float64 model, which
# leaves a finite difference too noisy; GPT-2 and GPT-NeoX run wholly in float64.
@pytest.mark.parametrize("arch", archs(
    **dict.fromkeys(("llama", "mistral", "qwen2"), "RMSNorm and rotary embeddings compute in float32 inside a float64 "
                    "model, which leaves the central difference too noisy")))
def test_row_scores_are_the_derivative_of_scaling_that_output(arch):
    """A row's weight x gradient is d loss / d alpha at alpha = 1 when the row is scaled by
    alpha: checked by a central difference through a forward hook, for every linear map of
    block 1; zeroing the row equals the hook at alpha = 0. In float64, so that the
    difference resolves the derivative."""
    model = tiny_hf(arch).double().eval()
    x = batch(seed=2)
    adapter = Adapter(model)
    units = [u for u in compute_scores(adapter, [x], lm_loss64, "row") if u.layer == 1]
    modules = {id(m): m for m, _ in ROWS[arch](model)}
    by_name = {n: m for n, m, _ in adapter.linears(1)}
    assert {id(m) for m in by_name.values()} == set(modules)  # every linear map, and only those
    assert len(units) == sum(m.weight.shape[axis] for m, axis in ROWS[arch](model))
    eps = 1e-4
    for u in units[:: max(1, len(units) // 12)]:
        module = by_name[u.kind.split(":", 1)[1]]
        losses = []
        for alpha in (1 + eps, 1 - eps):
            h = scaled_output(module, u.index, alpha)
            with torch.no_grad():
                losses.append(lm_loss64(model, x).item())
            h.remove()
        derivative = (losses[0] - losses[1]) / (2 * eps)
        assert u.score == pytest.approx(derivative, rel=1e-4, abs=1e-8)
    u = units[0]
    h = scaled_output(by_name[u.kind.split(":", 1)[1]], u.index, 0.0)
    with torch.no_grad():
        want = model(input_ids=x).logits
    h.remove()
    zero(adapter, u)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=x).logits, want, atol=1e-10)


@pytest.mark.parametrize("kind", ["neuron", "head", "weight", "row"])
def test_revert_resets_exactly_the_units_to_the_base(kind):
    """Reverting a unit copies the base's values into its weights and nothing else."""
    from wrapcli.analyses.pruning import scored_weights

    tuned, base = tiny_hf("llama", seed=0), tiny_hf("llama", seed=1)
    adapter = Adapter(tuned)
    source = {n: w.detach().clone() for n, w in scored_weights(Adapter(base), kind).items()}
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    units = compute_scores(adapter, [batch()], lm_loss, kind)[:5]
    for u in units:
        zero(adapter, u, source)
    after = dict(tuned.named_parameters())
    touched = torch.zeros(0)
    for name, w in before.items():
        changed = after[name].detach() != w
        if name not in source:
            assert not changed.any(), name
            continue
        mask = torch.zeros_like(w, dtype=torch.bool)
        for u in units:
            where, index = adapter.location(u)
            if where == name:
                mask[index] = True
        assert torch.equal(after[name].detach()[mask], source[name][mask])
        assert torch.equal(after[name].detach()[~mask], w[~mask])
        touched = torch.cat([touched, mask.flatten().float()])
    assert touched.sum() > 0
