"""Directional ablation (wrapcli/analyses/ablation.py): the weights orthogonalized against a
direction give the logits of the same model with that direction projected out of every
write to the residual stream by forward hooks, on three architectures (GPT-2 with tied
embeddings and learned positions, Llama, GPT-NeoX with biases and a parallel residual), and
the stream then holds no component along it; the direction is the mean difference."""

import copy

import pytest
import torch

from wrapcli.analyses.ablation import ablated, directions, orthogonalize
from wrapcli.models.adapters import Adapter

from models import tiny_hf


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
def test_orthogonalized_weights_equal_the_hooks(arch):
    model = tiny_hf(arch).eval()
    torch.manual_seed(1)
    r = torch.randn(model.config.hidden_size)
    r = r / r.norm()
    ids = torch.randint(0, model.config.vocab_size, (3, 12))
    with torch.no_grad():
        plain = model(ids).logits
        with ablated(Adapter(model), r):
            hooked = model(ids).logits
        edited = copy.deepcopy(model)
        orthogonalize(Adapter(edited), r)
        baked = edited(ids).logits
    assert not torch.allclose(plain, hooked, atol=1e-4)  # the direction mattered
    assert torch.allclose(baked, hooked, atol=1e-5), (baked - hooked).abs().max()
    stream = Adapter(edited).residual_stream(ids)
    assert max(float((h @ r).abs().max()) for h in stream) < 1e-5
    # the model that was not edited is unchanged, its head still tied if it was
    assert torch.equal(model(ids).logits, plain)


def test_directions_are_unit_mean_differences():
    a = [torch.tensor([3.0, 4.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    b = [torch.zeros(2, dtype=torch.float64)] * 2
    (r0, n0), (r1, n1) = directions(a, b)
    assert n0 == pytest.approx(5.0) and torch.allclose(r0, torch.tensor([0.6, 0.8]))
    assert n1 == 0.0 and torch.equal(r1, torch.zeros(2))
