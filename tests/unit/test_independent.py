"""Independent checks: each analysis against a second computation that shares none of its
code (a textbook formula, torch's own routine, an ablation done another way)."""

import numpy as np
import pytest
import torch

from wrapcli.analyses import audit
from wrapcli.models.adapters import Adapter

from models import built_in_archs, tiny


def test_linear_cka_equals_the_hsic_formulation():
    """Kornblith et al. (2019), eq. 4: CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with
    linear kernels K = X X^T, L = Y Y^T and HSIC(K, L) = tr(K H L H) / (n - 1)^2."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 7))
    y = x @ rng.normal(size=(7, 5)) + 0.5 * rng.normal(size=(60, 5))
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n

    def hsic(k, l):
        return np.trace(k @ h @ l @ h) / (n - 1) ** 2

    k, l = x @ x.T, y @ y.T
    expected = hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))
    assert audit.linear_cka(x, y) == pytest.approx(expected, rel=1e-10)
    assert 0.2 < expected < 0.99  # a case between the trivial ends


@pytest.mark.parametrize("shape", [(300, 40), (40, 300), (64, 64)])
def test_singular_values_equal_torch_svdvals(shape):
    from wrapcli.analyses.weightdiff import singular_values

    m = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    m[:, :3] *= 10  # a spread of magnitudes
    ours = singular_values(m, block=17)
    theirs = torch.linalg.svdvals(m.double())
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("arch", built_in_archs())
def test_zeroing_a_head_equals_ablating_its_slice_of_the_projection_input(arch):
    """Pruning zeroes the output-projection weights that read a head; the same forward
    with those weights intact but the head's slice of the projection's input set to zero
    (a hook on the activation) must give the same logits."""
    model = tiny(arch).eval()
    ids = torch.randint(0, 50, (3, 20), generator=torch.Generator().manual_seed(1))
    adapter = Adapter(model)
    layer, head, dh = 1, 1, adapter.head_dim
    proj = adapter.projection(layer, "head")

    def ablate(module, args):
        x = args[0].clone()
        x[..., head * dh:(head + 1) * dh] = 0
        return (x,)

    handle = proj.register_forward_pre_hook(ablate)
    with torch.no_grad():
        ablated = model(ids).logits
    handle.remove()
    adapter.zero_unit(layer, "head", head)
    with torch.no_grad():
        zeroed = model(ids).logits
    assert torch.allclose(ablated, zeroed, atol=1e-6)
    assert not torch.allclose(zeroed, tiny(arch).eval()(ids).logits, atol=1e-4)  # the head mattered


def test_attention_summary_equals_attention_computed_by_hand():
    """GPT-2's attention from <ans> recomputed from each block's own input: ln_1, the q/k
    slices of c_attn, scaled dot products from the last position (which sees every key),
    softmax; then the share on the text tokens equal to each letter. The prompts end at
    <ans>, as the probe's do; the text is found by decoding, not by the summary's offsets."""
    from wrapcli.analyses.probing import attention_summary
    from wrapcli.tasks import vocab
    from wrapcli.tasks.sequences import make_batch
    from wrapcli.tasks.spec import TaskSpec, parse_components

    model = tiny("gpt2").eval()
    spec = TaskSpec(components=parse_components("count:a"), text_len=48)
    full = make_batch(spec, np.random.default_rng(0), 8).tokens
    ans = [list(row).index(vocab.ANS) for row in full][0]
    prompts = full[:, : ans + 1]
    summary = attention_summary(model, prompts)
    sot, eot = list(prompts[0]).index(vocab.ID["<sot>"]), list(prompts[0]).index(vocab.ID["<eot>"])
    inputs = {}
    hooks = [b.ln_1.register_forward_hook(lambda m, a, out, i=i: inputs.__setitem__(i, out))
             for i, b in enumerate(model.transformer.h)]
    with torch.no_grad():
        model(torch.as_tensor(prompts))
    for h in hooks:
        h.remove()
    n_heads, d = model.config.n_head, model.config.n_embd
    dh = d // n_heads
    for layer, block in enumerate(model.transformer.h):
        qkv = inputs[layer] @ block.attn.c_attn.weight.detach() + block.attn.c_attn.bias.detach()  # (B, T, 3 d_model)
        q, k = qkv[..., :d], qkv[..., d:2 * d]
        for head in range(n_heads):
            qh, kh = q[..., head * dh:(head + 1) * dh], k[..., head * dh:(head + 1) * dh]
            probs = torch.softmax(qh[:, -1:] @ kh.transpose(1, 2) / dh ** 0.5, dim=-1)[:, 0].numpy()  # (B, T)
            row = next(r for r in summary if r["layer"] == layer and r["head"] == head)
            for t in vocab.TERMINALS:
                share = (probs[:, sot + 1:eot] * (prompts[:, sot + 1:eot] == vocab.ID[t])).sum(1).mean()
                assert row[t] == pytest.approx(share, abs=1e-5)
