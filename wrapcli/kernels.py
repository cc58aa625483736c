"""Faster kernels for the same function while a model trains.

GPT-2's ``gelu_new`` is the tanh approximation of GELU written as six elementwise
operations in Python (transformers' ``NewGELUActivation``); each one reads and writes the
whole MLP activation, forwards and backwards. ``torch.nn.functional.gelu(x,
approximate="tanh")`` computes the same formula in one fused kernel (equal to float
rounding; tests/test_kernels.py). On the CPU preset the activation was the largest cost
after the matrix products (benchmarks/bench_train.py measures the lever).

The swap lasts only while the loop runs: the model's config still says ``gelu_new`` and
the saved weights are untouched, so checkpoints load anywhere as before.
"""

from __future__ import annotations

import contextlib


def _fused():
    """A module computing gelu_new's formula in one kernel."""
    import torch

    class FusedTanhGELU(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.gelu(x, approximate="tanh")

    return FusedTanhGELU()


@contextlib.contextmanager
def fused_activations(model):
    """Replace every ``NewGELUActivation`` in ``model`` with the fused kernel, and put
    the originals back on exit."""
    from transformers.activations import NewGELUActivation

    swapped = []
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is NewGELUActivation:
                swapped.append((parent, name, child))
                setattr(parent, name, _fused())
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
