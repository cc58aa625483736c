"""Wall time and accuracy of CPU-preset pretraining, through the real CLI.

For each seed: `wrapcli train` (default preset, count task, prior a=0.9,b=0.1), then
`wrapcli eval` on count:a (main operand) and count:b (rarely seen). Prints one row per
seed and the mean, with the majority baseline next to each accuracy.
Run: python benchmarks/bench_pretrain.py [--seeds 0,1,2] [--preset cpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="wrapcli-bench-")
    os.makedirs(out, exist_ok=True)
    wrapcli = [sys.executable, "-m", "wrapcli"]
    rows = []
    print(f"preset={args.preset}  cores={os.cpu_count()}  out={out}")
    print(f"{'seed':>4} {'train s':>8} {'count:a':>8} {'(maj)':>6} {'count:b':>8} {'(maj)':>6}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        ckpt = os.path.join(out, f"pt_seed{seed}.safetensors")
        t0 = time.perf_counter()
        subprocess.run([*wrapcli, "train", "--preset", args.preset, "--task", "count", "--seed", str(seed),
                        "-o", ckpt, "-q"], check=True)
        wall = time.perf_counter() - t0
        res = subprocess.run([*wrapcli, "eval", ckpt, "--task", "count:a", "--task", "count:b", "--json", "-q"],
                             check=True, capture_output=True, text=True)
        tasks = json.loads(res.stdout)["results"]["tasks"]
        a, b = tasks["count:a"]["natural"], tasks["count:b"]["natural"]
        rows.append((wall, a["accuracy"], b["accuracy"]))
        print(f"{seed:>4} {wall:>8.0f} {a['accuracy']:>8.1%} {a['majority_baseline']:>6.0%} "
              f"{b['accuracy']:>8.1%} {b['majority_baseline']:>6.0%}", flush=True)
    n = len(rows)
    mean = [sum(r[i] for r in rows) / n for i in range(3)]
    print(f"{'mean':>4} {mean[0]:>8.0f} {mean[1]:>8.1%} {'':>6} {mean[2]:>8.1%}")


if __name__ == "__main__":
    main()
