"""Time and peak memory of probe's activation collection on a GPT-2-small-sized model.

Builds a random GPT-2 config locally (no download; 12 layers x 768 ~ 124M parameters,
``--layers`` / ``--width`` to change), streams ``--n`` sequences of ``--len`` tokens
through wrapcli's hooked residual stream in chunks and keeps one float16 vector per
layer and example, as `wrapcli probe` does. Prints wall time, examples/s, the size of
the kept activations and the process's peak resident memory.
Run: python benchmarks/bench_probe.py [--n 2000] [--len 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _hwm() -> float:
    """Peak resident memory so far, MiB (VmHWM)."""
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--len", type=int, default=64)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    args = ap.parse_args()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from wrapcli.analyses.probing import layer_features, token_chunks
    from wrapcli.models.checkpoint import quiet_transformers

    quiet_transformers()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=args.layers, n_embd=args.width, n_head=12)).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    base = _hwm()
    tokens = np.random.default_rng(0).integers(0, model.config.vocab_size, (args.n, args.len))
    t0 = time.perf_counter()
    feats = layer_features(model, token_chunks(tokens, 64), lambda h, m: h[:, -1])
    dt = time.perf_counter() - t0
    peak = _hwm()
    kept = sum(f.nbytes for f in feats) / 2**20
    print(f"model {params:.0f}M params, {args.n} x {args.len} tokens, {len(feats)} layers")
    print(f"time {dt:.1f} s ({args.n / dt:.0f} examples/s); kept activations {kept:.1f} MiB (float16)")
    print(f"peak RSS {peak:.0f} MiB (after building the model: {base:.0f} MiB)")


if __name__ == "__main__":
    main()
