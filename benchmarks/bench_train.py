"""Trainer throughput against a plain reference loop, in the same run.

The plain loop is written here: a stock Hugging Face GPT-2 of the preset's config
(transformers' default attention), the preset's batch, AdamW with default settings,
the HF loss (``labels=input_ids``, every next token), batches generated inline, no
tricks. The trainer is ``wrapcli.training.train`` with the preset's settings (the CPU
preset's loss is answer-only) and ``--precision auto`` (bf16 autocast on CUDA and on
AMX CPUs). Lever rows change one thing in the plain loop, so each lever is measured on its
own. Every row runs in a fresh subprocess (its own peak memory), rows alternate, and
each is repeated ``--repeats`` times; the table shows the median.

MFU (CUDA only) counts full-sequence model FLOPs, 6 N + 12 L T d per token, for every
row, so work a row skips (the answer-only loss) shows up as a higher MFU.

Run: python benchmarks/bench_train.py [--preset cpu|paper] [--steps 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

LEVERS = {
    "plain": "HF GPT-2, HF loss, AdamW defaults",
    "trainer": "wrapcli train loop, preset loss, --precision auto",
    "trainer --precision fp32": "wrapcli train loop, preset loss, fp32",
    "trainer --loss full": "wrapcli train loop, full loss, --precision auto",
    "plain + answer loss": "lever: answer-only loss",
    "plain + fused GELU": "lever: one-kernel gelu_new",
    "plain + eager attention": "lever: SDPA off (eager)",
    "plain + bf16 autocast": "lever: bf16 autocast",
    "plain + bf16 + eager": "lever: bf16 autocast, eager attention",
    "plain + fused AdamW": "lever: fused AdamW",
    "plain + foreach AdamW": "lever: foreach AdamW",
    "plain + compile": "lever: torch.compile (--compile)",
}


def setup(preset_name: str, device: str, attn: str = "sdpa"):
    from transformers import GPT2LMHeadModel

    from wrapcli.models.build import build_config
    from wrapcli.tasks import vocab
    from wrapcli.tasks.sequences import seq_len
    from wrapcli.tasks.spec import TaskSpec, parse_components, parse_prior
    from wrapcli.training import presets

    p = presets.get(preset_name)
    spec = TaskSpec(components=parse_components("count"), prior=parse_prior(p.prior), text_len=p.text_len, window=p.window)
    config = build_config(p.shape, vocab.VOCAB_SIZE, seq_len(p.text_len))
    import torch

    torch.manual_seed(0)
    model = GPT2LMHeadModel._from_config(config, attn_implementation=attn).to(device)
    return p, spec, model


def run_plain(lever: str, preset_name: str, steps: int, warmup: int, device: str) -> dict:
    import torch

    from wrapcli.tasks.sequences import batch_for_step

    attn = "eager" if lever in ("plain + eager attention", "plain + bf16 + eager") else "sdpa"
    p, spec, model = setup(preset_name, device, attn)
    kwargs = {"fused": True} if lever == "plain + fused AdamW" else {}
    kwargs |= {"foreach": True} if lever == "plain + foreach AdamW" else {}
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, **kwargs)
    forward = torch.compile(model) if lever == "plain + compile" else model
    bf16 = lever in ("plain + bf16 autocast", "plain + bf16 + eager")
    if lever == "plain + fused GELU":
        from wrapcli.core.kernels import fused_activations

        fused_activations(model).__enter__()  # for the rest of this process
    times = []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        x = torch.as_tensor(batch_for_step(spec, step, p.batch_size).tokens).to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            if lever == "plain + answer loss":
                logits = forward(input_ids=x[:, :-2]).logits[:, -1]
                loss = torch.nn.functional.cross_entropy(logits.float(), x[:, -2])
            else:
                loss = forward(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # a plain loop logs its loss every step
        times.append(time.perf_counter() - t0)
    return {"s_per_step": statistics.median(times[warmup:]), "batch": p.batch_size, "seq": x.shape[1], "model": model}


def run_trainer(lever: str, preset_name: str, steps: int, warmup: int, device: str) -> dict:
    import torch

    from wrapcli.core.runtime import resolve_precision
    from wrapcli.training.loop import TrainConfig, train

    p, spec, model = setup(preset_name, device)
    loss = "full" if lever == "trainer --loss full" else p.loss
    precision = "fp32" if lever == "trainer --precision fp32" else resolve_precision("auto", device)
    cfg = TrainConfig(steps=warmup + steps, batch_size=p.batch_size, lr=p.lr, loss=loss,
                      eval_every=10**9, eval_size=p.eval_size, precision=precision)
    stamps = {}

    def on_step(step, metrics):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps[step] = time.perf_counter()

    # The last step evaluates; timing stops at the step before it.
    train(model, spec, cfg, device=device, on_step=on_step)
    last = warmup + steps - 1
    per_step = (stamps[last] - stamps[warmup]) / (last - warmup)
    from wrapcli.tasks.sequences import seq_len

    return {"s_per_step": per_step, "batch": p.batch_size, "seq": seq_len(p.text_len), "model": model,
            "precision": precision}


def child(args) -> None:
    import torch

    torch.manual_seed(0)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    fn = run_trainer if args.child.startswith("trainer") else run_plain
    r = fn(args.child, args.preset, args.steps, args.warmup, args.device)
    model = r.pop("model")
    cfg = model.config
    n = sum(p.numel() for n_, p in model.named_parameters() if "wpe" not in n_)  # lm_head tied to wte
    flops_per_token = 6 * n + 12 * cfg.n_layer * r["seq"] * cfg.n_embd
    r["tokens_per_s"] = r["batch"] * r["seq"] / r["s_per_step"]
    r["model_tflops"] = flops_per_token * r["tokens_per_s"] / 1e12
    if args.device.startswith("cuda"):
        r["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        r["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="for MFU on CUDA (H100 bf16 dense: 989)")
    ap.add_argument("--rows", default=None, help="comma-separated subset of rows")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    rows = args.rows.split(",") if args.rows else [r for r in LEVERS if r != "plain + compile" or args.compile]
    if not args.device.startswith("cuda"):
        rows = [r for r in rows if r != "plain + fused AdamW" or args.device == "cpu"]
    results = {r: [] for r in rows}
    for _ in range(args.repeats):
        for row in rows:  # alternate rows so drift in machine load hits all alike
            cmd = [sys.executable, __file__, "--child", row, "--preset", args.preset, "--device", args.device,
                   "--steps", str(args.steps), "--warmup", str(args.warmup)]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
            if out.returncode or not line:
                print(f"{row}: failed: {out.stderr.strip().splitlines()[-1:] }", file=sys.stderr)
                continue
            results[row].append(json.loads(line[0][7:]))

    base = statistics.median(r["tokens_per_s"] for r in results["plain"]) if results.get("plain") else None
    print(f"preset={args.preset} device={args.device} cores={os.cpu_count()} timed steps={args.steps} "
          f"(+{args.warmup} warm-up) x {args.repeats} repeats, median")
    mfu = args.device.startswith("cuda")
    head = f"{'row':<24}{'s/step':>9}{'tokens/s':>12}{'vs plain':>10}{'peak MiB':>10}" + (f"{'MFU':>7}" if mfu else "")
    print(head + "  what")
    for row in rows:
        if not results[row]:
            print(f"{row:<24}{'failed':>9}")
            continue
        tps = statistics.median(r["tokens_per_s"] for r in results[row])
        sps = statistics.median(r["s_per_step"] for r in results[row])
        peak = max(r["peak_mib"] for r in results[row])
        ratio = f"{tps / base:>9.2f}x" if base else f"{'-':>10}"
        extra = f"{statistics.median(r['model_tflops'] for r in results[row]) / args.peak_tflops:>7.1%}" if mfu else ""
        print(f"{row:<24}{sps:>9.3f}{tps:>12,.0f}{ratio}{peak:>10,.0f}{extra}  {LEVERS[row]}")


if __name__ == "__main__":
    main()
