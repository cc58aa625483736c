"""Quantization as an attack on unlearning: round the weights, then see what comes back.

Zhang et al. 2024 ("Catastrophic failure of LLM unlearning via quantization") find that
rounding an unlearned model's weights to 4 bits restores much of the "forgotten"
knowledge for unlearning methods that move the weights only slightly: the edit is smaller
than the rounding step, so rounding snaps the weights back towards the original's grid
points. OpenUnlearning reports robustness to 4-bit NF4 as one of its meta-evaluation axes.

Two schemes, each applied to every linear map's weight in the blocks (attention and MLP;
embeddings, norms and the output head stay as they are, as weight-only quantizers leave
them) and written back de-quantized, so every other command reads the result as an
ordinary model:

- ``rtn``: round to nearest, symmetric (absmax) per group of ``group_size`` consecutive
  inputs of one output channel (``group_size`` 0: the whole channel): scale = absmax /
  (2^(bits-1) - 1), q = round(w / scale) clamped to [-(2^(bits-1) - 1), 2^(bits-1) - 1],
  w' = q x scale (round half to even, as torch.round);
- ``nf4``: 4-bit NormalFloat as bitsandbytes defines it (Dettmers et al. 2023, QLoRA): the
  tensor is flattened in its storage order and cut into blocks of ``group_size`` (64 by
  default), each block is divided by its absmax, every value is replaced by the nearest
  of the 16 code values ``NF4`` (ties to the lower code), and w' = code x absmax.
"""

from __future__ import annotations

# bitsandbytes' NF4 code book (functional.get_4bit_type("nf4")): quantiles of N(0, 1)
# normalised to [-1, 1], with an exact zero
NF4 = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0)
SCHEMES = ("rtn", "nf4")


def rtn(w, bits: int, group_size: int, out_axis: int = 0):
    """``w`` (a linear map's weight) rounded to ``bits`` per group of ``group_size``
    inputs of each output channel (``out_axis``: the axis that indexes outputs; GPT-2's
    Conv1D stores its weight transposed), de-quantized, in ``w``'s dtype."""
    import torch

    m = w.detach().float()
    if out_axis == 1:
        m = m.t()
    rows, cols = m.shape  # (outputs, inputs)
    g = group_size or cols
    pad = -cols % g
    grouped = torch.nn.functional.pad(m, (0, pad)).reshape(rows, -1, g)  # (outputs, groups, g)
    qmax = 2 ** (bits - 1) - 1
    scale = grouped.abs().amax(-1, keepdim=True) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)  # an all-zero group stays zero
    q = torch.round(grouped / scale).clamp(-qmax, qmax)
    out = (q * scale).reshape(rows, -1)[:, :cols]
    return (out.t() if out_axis == 1 else out).contiguous().to(w.dtype)


def nf4(w, group_size: int = 64):
    """``w`` quantized to NF4 in blocks of ``group_size`` values of its flattened storage
    order and de-quantized, in ``w``'s dtype."""
    import torch

    flat = w.detach().float().reshape(-1)
    n = flat.numel()
    pad = -n % group_size
    blocks = torch.nn.functional.pad(flat, (0, pad)).reshape(-1, group_size)
    absmax = blocks.abs().amax(-1, keepdim=True)
    safe = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    codes = torch.tensor(NF4)
    mids = (codes[1:] + codes[:-1]) / 2  # a value exactly between two codes goes to the lower one
    idx = torch.bucketize(blocks / safe, mids, right=False)
    out = (codes[idx] * absmax).reshape(-1)[:n]
    return out.reshape(w.shape).to(w.dtype)


def quantize(adapter, scheme: str, bits: int, group_size: int) -> list[dict]:
    """Quantize every linear map of every block of ``adapter``'s model in place; one row
    per weight: its name, shape and the relative change ||W' - W|| / ||W||."""
    import torch

    rows = []
    with torch.no_grad():
        for layer in range(len(adapter.blocks)):
            for name, module, out_axis in adapter.linears(layer):
                w = module.weight
                new = rtn(w, bits, group_size, out_axis) if scheme == "rtn" else nf4(w, group_size)
                change = float((new.float() - w.float()).norm() / w.float().norm().clamp_min(1e-30))
                w.copy_(new)
                rows.append({"name": adapter.param_name(layer, name), "shape": list(w.shape), "relative_change": change})
    return rows
