"""Faster kernels while a model trains, and the training precision.

GPT-2's ``gelu_new`` is the tanh approximation of GELU written as six elementwise
operations in Python (transformers' ``NewGELUActivation``); each one reads and writes the
whole MLP activation, forwards and backwards. ``torch.nn.functional.gelu(x,
approximate="tanh")`` computes the same formula in one fused kernel (equal to float
rounding; tests/unit/test_kernels.py). On the CPU preset the activation was the largest cost
after the matrix products (benchmarks/bench_train.py measures the lever).

Precision (wrapcli/core/runtime.py chooses it): bf16 autocast keeps weights and optimizer state
in fp32. On CPU, PyTorch's fused attention kernel is several times slower in bf16 than in fp32, so a bf16 CPU run uses the plain
("eager") attention, whose matrix products go to the bf16 units: on the CPU preset that
made a step 1.6x faster (benchmarks/bench_train.py).

Evaluation takes the same precision (``--precision`` of eval and prune; a
training run evaluates at its own): on the AMX CPU, bf16 evaluation was 1.7x faster and
changed 0-0.35% of the predictions of the CPU preset's checkpoints (docs/performance.md).

Every swap lasts only while the loop runs: the model's config still says ``gelu_new``
and its attention implementation, and the saved weights are untouched, so checkpoints
load anywhere as before.
"""

from __future__ import annotations

import contextlib


def autocast(device: str, precision: str):
    """The autocast context of a training step or an evaluation."""
    import torch

    dev = torch.device(device)
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _fused():
    """A module computing gelu_new's formula in one kernel."""
    import torch

    class FusedTanhGELU(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.gelu(x, approximate="tanh")

    return FusedTanhGELU()


@contextlib.contextmanager
def fast_kernels(model, device: str, precision: str):
    """The fused activation, and eager attention for bf16 on CPU, while a model trains
    or is evaluated. Nesting is harmless: an inner call finds nothing left to swap."""
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    swap = precision == "bf16" and not device.startswith("cuda") and before == "sdpa"
    with fused_activations(model), (eager_attention(model) if swap else contextlib.nullcontext()):
        yield


@contextlib.contextmanager
def eager_attention(model):
    """The plain attention implementation while the block runs (it returns attention
    weights, and its matrix products use bf16 units), then the one the model had."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


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
