"""Full-parameter training held near its floor: weights, gradients and two AdamW moments.

Traced on the CPU at Qwen2-0.5B's shape (docs/performance.md, "Where full-parameter
training's memory goes"), wrapcli's loop and a plain Hugging Face loop peaked about 1.4x
the fp32 weights above that floor. Two moments held half the weights beyond the end of
the backward pass; both are removed here without changing a number, and the C allocator
is asked to give freed gradients back before the largest update:

- **The AdamW update's temporaries.** torch's one-tensor-at-a-time update builds two
  temporaries the size of the tensor it updates (``exp_avg_sq.sqrt()`` and its division),
  and by then every gradient is alive. ``step_one_at_a_time`` hands the optimizer one
  gradient at a time, largest last, and frees each once its tensor is updated; each
  tensor's update is the same arithmetic, so the weights are bit-identical. glibc keeps
  the freed gradients' blocks unless asked (``return_freed``).
- **A tied embedding's two gradients.** When the output head shares the input embedding's
  matrix (GPT-2, Qwen2, SmolLM), autograd builds the head's gradient, a dense
  zero-filled gradient of the embedding lookup and their sum: three vocabulary-sized
  tensors while every other gradient is alive. ``tied_gradients`` writes the head's
  gradient into ``.grad`` and adds the lookup's rows into it in place, summing each
  row's contributions in the order autograd does (bit-identical, tests/unit/test_lean.py).

Each lever needs a tensor of at least ``MMAPPED`` bytes (the embedding of any model that
people audit); below that they cost time and save nothing.
"""

from __future__ import annotations

import contextlib
import functools

# glibc maps blocks of at least this size (its mmap threshold's ceiling on 64-bit) afresh:
# only then can a tensor's update temporaries not reuse the freed gradients' heap blocks.
# Below it the levers buy nothing and cost time: on a 4-layer, 128-wide GPT-2 a trim per
# step cost up to double, the one-at-a-time step 6% and the tied gradient 2-3%
# (docs/performance.md), so each lever waits for a tensor of this size.
MMAPPED = 32 << 20


def step_one_at_a_time(opt) -> None:
    """``opt.step()`` over the parameters that have gradients, one at a time, the largest
    last, each gradient freed once its tensor is updated. torch's AdamW skips a parameter
    without a gradient and keeps a step count per parameter, so this is the same update
    as one ``step()``; not for a fused or ``foreach`` optimizer (whose kernels batch the
    tensors: run them whole). Before the largest update, when it is large enough to be
    mapped afresh (``MMAPPED``), the C allocator is asked to give back what the freed
    gradients held (``return_freed``)."""
    params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
    grads = [p.grad for p in params]
    for p in params:
        p.grad = None
    order = sorted(range(len(params)), key=lambda i: params[i].numel())
    for i in order:
        if i == order[-1] and params[i].nelement() * params[i].element_size() >= MMAPPED:
            return_freed()
        params[i].grad, grads[i] = grads[i], None
        opt.step()
        params[i].grad = None


def return_freed() -> None:
    """glibc keeps freed blocks under its mmap threshold (up to 32 MiB: every weight matrix
    of a 1B model) in its heaps, so the gradients freed so far stayed resident while the
    largest tensor's update mapped its two temporaries anew: the 0.5B peak moved between
    4.4x and 4.7x from run to run. ``malloc_trim`` returns them (measured: 4.61x -> 4.45x,
    seconds per step unchanged). Elsewhere than glibc, nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def pays_to_step_one_at_a_time(opt) -> bool:
    """Whether ``step_one_at_a_time`` is worth its Python loop: not for fused or ``foreach``
    kernels (which batch the tensors), nor when no tensor reaches ``MMAPPED``."""
    if any(group.get("fused") or group.get("foreach") for group in opt.param_groups):
        return False
    return any(p.nelement() * p.element_size() >= MMAPPED for group in opt.param_groups for p in group["params"])


def _accumulate(weight, grad) -> None:
    """Add ``grad`` to ``weight.grad`` as autograd's accumulation would."""
    if weight.grad is None:
        weight.grad = grad
    else:
        weight.grad.add_(grad)


def _functions(device_type: str):
    """The two autograd functions; under autocast they compute as torch's own ops do (the
    backward in the forward's autocast state, the weight's gradient cast to its dtype)."""
    import torch

    fwd, bwd = torch.amp.custom_fwd(device_type=device_type), torch.amp.custom_bwd(device_type=device_type)

    class HeadInto(torch.autograd.Function):
        """``linear(x, weight)``; the weight's gradient goes straight into ``.grad``."""

        @staticmethod
        @fwd
        def forward(ctx, x, weight):
            ctx.save_for_backward(x)
            ctx.weight = weight
            return torch.nn.functional.linear(x, weight)

        @staticmethod
        @bwd
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            weight = ctx.weight
            g2, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
            _accumulate(weight, g2.t().mm(x2).to(weight.dtype))
            return (grad.matmul(weight) if ctx.needs_input_grad[0] else None), None

    class LookupInto(torch.autograd.Function):
        """``embedding(ids, weight)``; the looked-up rows' gradients are added into ``.grad``."""

        @staticmethod
        @fwd
        def forward(ctx, ids, weight, padding_idx):
            ctx.save_for_backward(ids)
            ctx.weight, ctx.padding_idx = weight, padding_idx
            return torch.nn.functional.embedding(ids, weight, padding_idx)

        @staticmethod
        @bwd
        def backward(ctx, grad):
            (ids,) = ctx.saved_tensors
            weight = ctx.weight
            flat, rows = ids.reshape(-1), grad.reshape(-1, grad.shape[-1])
            if ctx.padding_idx is not None:  # the padding row gets no gradient (as in torch)
                keep = flat != ctx.padding_idx
                flat, rows = flat[keep], rows[keep]
            used, where = torch.unique(flat, return_inverse=True)
            sums = rows.new_zeros(len(used), rows.shape[1]).index_add_(0, where, rows).to(weight.dtype)
            if weight.grad is None:
                weight.grad = torch.zeros_like(weight)
            weight.grad.index_add_(0, used, sums)
            return None, None, None

    return HeadInto, LookupInto


def _tied_pair(model):
    """(embedding, head) when the head is a bias-free linear map sharing a plain embedding's
    trainable matrix of at least ``MMAPPED`` bytes; else None."""
    import torch

    get_in, get_out = getattr(model, "get_input_embeddings", None), getattr(model, "get_output_embeddings", None)
    if get_in is None or get_out is None:
        return None
    emb, head = get_in(), get_out()
    if type(emb) is not torch.nn.Embedding or type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    if emb.weight is not head.weight or not emb.weight.requires_grad:
        return None
    if emb.max_norm is not None or emb.scale_grad_by_freq or emb.sparse:
        return None
    if emb.weight.nelement() * emb.weight.element_size() < MMAPPED:
        return None
    return emb, head


@contextlib.contextmanager
def tied_gradients(model, device: str):
    """While the block runs, a tied embedding's gradient is accumulated in place (see the
    module's docstring); a model without one is left as it is. Not for a model whose
    gradients are reduced by hooks (data-parallel or sharded): those hooks would not see
    gradients written this way."""
    pair = _tied_pair(model)
    if pair is None:
        yield
        return
    emb, head = pair
    import torch

    head_into, lookup_into = _functions(torch.device(device).type)
    emb.forward = lambda ids: lookup_into.apply(ids, emb.weight, emb.padding_idx)
    head.forward = lambda x: head_into.apply(x, head.weight)
    try:
        yield
    finally:
        del emb.forward, head.forward
