"""Time and peak memory of compare's weight diff on two ~124M-parameter checkpoints.

Writes two random GPT-2-small-sized safetensors files (the second a perturbed copy)
into a temporary folder, then runs the streamed weight comparison in a fresh process
and prints its wall time, its peak resident memory (VmHWM), the largest tensor and the total
checkpoint size: memory should track the largest tensor, not the model.
Run: python benchmarks/bench_compare.py [--layers 12] [--width 768]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

# VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec and would report the parent's peak.
CHILD = r"""
import sys, time
def hwm():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024
import torch, wrapcli.analyses.weightdiff
base = hwm()
t0 = time.perf_counter()
rep = wrapcli.analyses.weightdiff.compare_weights(sys.argv[1], sys.argv[2])
dt = time.perf_counter() - t0
print(f"{dt:.1f} {hwm():.0f} {base:.0f} {len(rep['tensors'])} {len(rep['changed_tensors'])}")
"""

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file
    from transformers import GPT2Config

    cfg = GPT2Config(n_layer=args.layers, n_embd=args.width, n_head=12)
    d, L, V, P = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.n_positions
    shapes = {"transformer.wte.weight": (V, d), "transformer.wpe.weight": (P, d)}
    for l in range(L):
        p = f"transformer.h.{l}."
        shapes.update({p + "attn.c_attn.weight": (d, 3 * d), p + "attn.c_proj.weight": (d, d),
                       p + "mlp.c_fc.weight": (d, 4 * d), p + "mlp.c_proj.weight": (4 * d, d),
                       p + "ln_1.weight": (d,), p + "ln_2.weight": (d,)})
    n_params = sum(torch.Size(s).numel() for s in shapes.values())
    largest = max(torch.Size(s).numel() for s in shapes.values()) * 4 / 2**20
    meta = {"config": cfg.to_json_string(use_diff=False), "format": "pt"}
    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(0)
        a = {k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}
        save_file(a, os.path.join(tmp, "a.safetensors"), metadata=meta)
        b = {k: v + torch.randn(v.shape, generator=g) * 1e-3 for k, v in a.items()}
        save_file(b, os.path.join(tmp, "b.safetensors"), metadata=meta)
        del a, b
        size = os.path.getsize(os.path.join(tmp, "a.safetensors")) / 2**20
        out = subprocess.run([sys.executable, "-c", CHILD, os.path.join(tmp, "a.safetensors"),
                              os.path.join(tmp, "b.safetensors")], capture_output=True, text=True, check=True)
    dt, peak, base, n_tensors, n_changed = out.stdout.split()
    print(f"two checkpoints of {n_params / 1e6:.0f}M parameters ({size:.0f} MiB each), {n_tensors} tensors, {n_changed} changed")
    print(f"weight diff: {float(dt):.1f} s; peak resident memory {float(peak):.0f} MiB, of which "
          f"{float(base):.0f} MiB is Python + torch before reading any weight; largest tensor {largest:.0f} MiB")

if __name__ == "__main__":
    main()
