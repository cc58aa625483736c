"""The default third-party relearning audit of a 135M model on the CPU, against a plain
Hugging Face loop that does the same work, side by side in one run.

The audit: ``revive tuned/ --data relearn.jsonl --eval-data heldout.jsonl --reference
base/`` with 20 relearning and 40 held-out prompt/answer records, 2 learning rates x 3
seeds x 20 steps of batch 8, the held-out records scored at every point of the evaluation
grid (0, 5, 7, 10, 15, 20) of every curve, the reference and the fine-tuned model scored
once before, and the relearning records scored after each curve's last step.

The plain loop does the same work in one process with nothing but transformers and torch:
load the reference and score the held-out records (teacher-forced argmax over the answer
tokens, batches of 16), load the fine-tuned model and score them, then for each LR and
seed load the fine-tuned model afresh, train 20 AdamW steps of 8 records (answer-token
loss, gradients clipped at 1) in a seeded order, score the held-out records at the grid's
steps and the relearning records at the last. Its wall time is the bar: wrapcli's ratio
to it is printed (the issue's target: at most 1.2, and at most 2 minutes on two cores).

The models are random-weight Llama configs at SmolLM-135M's shape (built locally, nothing
is downloaded) with a word-level tokenizer (benchmarks/bench_audit.py ``build``), and the
fine-tune is a small perturbation: what is timed is the work, not what it finds.

Run: python benchmarks/bench_relearn.py [--threads 2] [--repeat 1] [--rows wrapcli,plain]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS, STEPS, LRS, BATCH, SCORE_BATCH = 3, 20, (1e-5, 1e-4), 8, 16
GRID = (0, 5, 7, 10, 15, 20)


def prepare(root: Path) -> None:
    """The models and bench_audit's records: its 20 relearning records, and the first 40 of
    its 60 others as the held-out ones."""
    sys.path.insert(0, str(HERE))
    from bench_audit import build, records

    build(root, "135m", "cpu")
    records(root)
    held = (root / "pairs.jsonl").read_text().splitlines()[:40]
    (root / "heldout.jsonl").write_text("".join(line + "\n" for line in held))


def plain(root: Path) -> dict:
    """The plain loop (run in a process of its own)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(root / "tuned"))
    pad = tok.pad_token_id

    def encode(name):
        out = []
        for line in (root / name).read_text().splitlines():
            r = json.loads(line)
            p, a = tok(r["prompt"])["input_ids"], tok(r["answer"])["input_ids"]
            out.append((p + a, [-100] * len(p) + a))
        return out

    held, relearn = encode("heldout.jsonl"), encode("relearn.jsonl")

    def collate(batch):
        width = max(len(x) for x, _ in batch)
        ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
        mask = torch.arange(width)[None] < torch.tensor([len(x) for x, _ in batch])[:, None]
        return ids, labels, mask.long()

    def score(model, examples):
        model.eval()
        right, loss_sum, count = 0, 0.0, 0
        with torch.inference_mode():
            for i in range(0, len(examples), SCORE_BATCH):
                ids, labels, mask = collate(examples[i:i + SCORE_BATCH])
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
                target = labels[:, 1:]
                scored = target != -100
                loss = torch.nn.functional.cross_entropy(logits[scored].float(), target[scored], reduction="sum")
                loss_sum, count = loss_sum + float(loss), count + int(scored.sum())
                hit = (logits.argmax(-1) == target) | ~scored
                right += int(hit.all(-1).sum())
        model.train()
        return right / len(examples), loss_sum / count

    def load(name):
        return AutoModelForCausalLM.from_pretrained(str(root / name), dtype=torch.float32)

    start = time.perf_counter()
    ref = load("base")
    score(ref, held)
    del ref
    tuned = load("tuned")
    score(tuned, held)
    score(tuned, relearn)
    del tuned
    for lr in LRS:
        for seed in range(SEEDS):
            model = load("tuned")
            opt = torch.optim.AdamW(model.parameters(), lr=lr)
            order = list(range(len(relearn)))
            random.Random(seed).shuffle(order)
            score(model, held)
            for step in range(1, STEPS + 1):
                batch = [relearn[order[(step * BATCH + i) % len(order)]] for i in range(BATCH)]
                ids, labels, mask = collate(batch)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                if step in GRID:
                    score(model, held)
            score(model, relearn)
            del model, opt
    return {"wall_s": time.perf_counter() - start}


def own_peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_row(kind: str, root: Path, threads: int) -> dict:
    env = {**os.environ, "WRAPCLI_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    if kind == "wrapcli":
        wrapcli = [sys.executable, "-m", "wrapcli", "revive", str(root / "tuned"), "--data", str(root / "relearn.jsonl"),
                   "--eval-data", str(root / "heldout.jsonl"), "--reference", str(root / "base"),
                   "--lr", ",".join(f"{x:g}" for x in LRS), "--steps", str(STEPS), "--batch-size", str(BATCH),
                   "--seeds", str(SEEDS), "--device", "cpu", "-q", "-o", str(root / "revive.json")]
        code = ("import resource, runpy, sys, time; sys.argv = ['wrapcli', *sys.argv[1:]]; t = time.perf_counter()\n"
                "try:\n    runpy.run_module('wrapcli', run_name='__main__')\n"
                "except SystemExit as e:\n    assert not e.code, e.code\n"
                f"import json; sys.path.insert(0, {str(HERE)!r}); from bench_relearn import own_peak_mib\n"
                "print(json.dumps({'inner_s': time.perf_counter() - t, 'peak_mib': own_peak_mib()}))")
        cmd = [sys.executable, "-c", code, *wrapcli[3:]]
    else:
        code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import torch; torch.set_num_threads({threads})\n"
                f"from bench_relearn import plain, own_peak_mib; from pathlib import Path\n"
                f"r = plain(Path({str(root)!r})); r['peak_mib'] = own_peak_mib(); print(json.dumps(r))")
        cmd = [sys.executable, "-c", code]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{kind} failed: {done.stderr.strip()[-600:]}")
    inner = json.loads(done.stdout.strip().splitlines()[-1])
    return {"process_s": wall, **inner}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads per row (default: all CPUs)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each row, alternating (the median is printed)")
    ap.add_argument("--rows", default="wrapcli,plain")
    opts = ap.parse_args()
    import platform

    with tempfile.TemporaryDirectory(prefix="bench-relearn-") as tmp:
        root = Path(tmp)
        prepare(root)
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {opts.threads} threads a row; "
              f"135M-shaped Llama; {len(LRS)} LRs x {SEEDS} seeds x {STEPS} steps of batch {BATCH}; "
              "40 held-out and 20 relearning records", flush=True)
        got: dict[str, list[dict]] = {k: [] for k in opts.rows.split(",")}
        for _ in range(opts.repeat):
            for kind in got:
                got[kind].append(run_row(kind, root, opts.threads))
                print(f"{kind}: {json.dumps(got[kind][-1])}", flush=True)

    def median(kind, key):
        vals = sorted(r[key] for r in got[kind] if key in r)
        return vals[len(vals) // 2] if vals else None

    print("| row | process wall (s) | timed part (s) | peak RSS (MiB) |")
    print("| --- | --- | --- | --- |")
    for kind in got:
        inner = median(kind, "inner_s") or median(kind, "wall_s")
        print(f"| {kind} | {median(kind, 'process_s'):.1f} | {inner:.1f} | {median(kind, 'peak_mib'):,.0f} |")
    if {"wrapcli", "plain"} <= set(got):
        ratio = median("wrapcli", "process_s") / median("plain", "process_s")
        print(f"ratio wrapcli / plain (process wall): {ratio:.2f}")


if __name__ == "__main__":
    main()
