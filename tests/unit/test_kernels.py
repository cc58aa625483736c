"""The fused activation used while training computes GPT-2's gelu_new."""

import torch

from wrapcli.core.kernels import fused_activations

from models import tiny


def test_fused_gelu_matches_gelu_new_and_is_put_back():
    model = tiny().eval()
    x = torch.randint(0, 200, (4, 20))
    originals = [type(b.mlp.act).__name__ for b in model.transformer.h]
    with torch.no_grad():
        before = model(input_ids=x).logits
        with fused_activations(model) as n:
            assert n == len(model.transformer.h)
            assert all(type(b.mlp.act).__name__ == "FusedTanhGELU" for b in model.transformer.h)
            fused = model(input_ids=x).logits
    torch.testing.assert_close(fused, before, atol=1e-5, rtol=1e-5)
    assert [type(b.mlp.act).__name__ for b in model.transformer.h] == originals == ["NewGELUActivation"] * 2
    z = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    from transformers.activations import NewGELUActivation

    torch.testing.assert_close(torch.nn.functional.gelu(z, approximate="tanh"), NewGELUActivation()(z))


def test_bf16_on_cpu_trains_with_eager_attention_and_puts_sdpa_back():
    from wrapcli.core.kernels import fast_kernels
    from wrapcli.core.runtime import resolve_precision

    model = tiny()
    assert model.config._attn_implementation == "sdpa"
    with fast_kernels(model, "cpu", "bf16"):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
    with fast_kernels(model, "cpu", "fp32"):
        assert model.config._attn_implementation == "sdpa"
    assert resolve_precision("fp32", "cuda") == "fp32" and resolve_precision("auto", "cuda") == "bf16"
