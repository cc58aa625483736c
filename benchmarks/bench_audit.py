"""Wall time and peak memory of the third-party audit's --data commands on real-sized models.

Builds random-weight Llama configs locally (nothing is downloaded) at the shape of a
135M model (SmolLM-135M: width 576, 30 layers, vocabulary 49,152) and, with --size 0.5b,
of a ~0.5B one (Qwen2-0.5B: width 896, 24 layers, vocabulary 151,936), each with a
word-level tokenizer of that vocabulary size; writes 60 prompt/answer records and 120
text/label records; then runs eval --data, prune --data, probe --data, revive --data
(2 seeds x 10 steps) and compare --task, each as its own `wrapcli` process, and prints
its wall time and peak resident memory (the process's own maximum RSS), beside the fp32
weights' size.
Run: python benchmarks/bench_audit.py [--size 135m|0.5b] [--only revive]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {  # (hidden, layers, heads, kv heads, intermediate, vocabulary)
    "135m": (576, 30, 9, 3, 1536, 49_152),
    "0.5b": (896, 24, 14, 2, 4864, 151_936),
}


def build(root: Path, size: str) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    hidden, layers, heads, kv, inter, vocab = SIZES[size]
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv, intermediate_size=inter, vocab_size=vocab,
                      max_position_embeddings=512, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    words = {f"w{i}": i for i in range(vocab - 2)} | {"[PAD]": vocab - 2, "[UNK]": vocab - 1}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    for name in ("base", "tuned"):
        model.save_pretrained(root / name)
        fast.save_pretrained(root / name)
        with torch.no_grad():  # the "fine-tune": a small perturbation
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 1e-3)
    n_params = sum(p.numel() for p in model.parameters())
    return n_params


def records(root: Path) -> None:
    import random

    rng = random.Random(0)
    w = lambda: f"w{rng.randrange(40_000)}"  # noqa: E731
    pairs = [{"prompt": " ".join(w() for _ in range(12)), "answer": " " + " ".join(w() for _ in range(3))}
             for _ in range(80)]
    (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs[:60]))
    (root / "relearn.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs[60:]))
    labels = [{"text": " ".join(w() for _ in range(20)), "label": i % 2, "group": i // 2} for i in range(120)]
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels))


def run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one wrapcli process: wait4 gives that child's
    own rusage (RUSAGE_CHILDREN would give the largest of all children so far)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "wrapcli", *args, "--device", "cpu", "-q"],
                                 stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        dt = time.perf_counter() - t0
        if status != 0:
            err.seek(0)
            raise SystemExit(f"wrapcli {' '.join(args)} failed: {err.read().strip()}")
    return dt, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), default="135m")
    ap.add_argument("--only", help="run only the commands whose row starts with this word, e.g. revive")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_params = build(root, opts.size)
        records(root)
        weights = n_params * 4 / 2**20
        print(f"random Llama, {n_params / 1e6:.0f}M parameters, fp32 weights {weights:.0f} MiB, "
              f"vocabulary {SIZES[opts.size][5]:,}; {os.cpu_count()} CPU cores")
        b, t = str(root / "base"), str(root / "tuned")
        steps = [
            ("eval --data (60 records)", ["eval", t, "--data", str(root / "pairs.jsonl")]),
            ("probe --data (120 records, grouped)", ["probe", t, "--data", str(root / "labels.jsonl"), "--random-inits", "1"]),
            ("compare --task (60 records, KL depth)", ["compare", b, t, "--task", str(root / "pairs.jsonl")]),
            ("prune --data (neurons, K 0,1,5,10)", ["prune", t, "--data", str(root / "pairs.jsonl"), "--k", "0,1,5,10",
                                                   "--batch-size", "16"]),
            ("revive --data (2 seeds x 10 steps, batch 8)", ["revive", t, "--data", str(root / "relearn.jsonl"),
                                                            "--eval-data", str(root / "pairs.jsonl"), "--reference", b,
                                                            "--lr", "1e-5", "--steps", "10", "--batch-size", "8",
                                                            "--seeds", "2"]),
        ]
        print("| command | wall s | peak RSS MiB | x fp32 weights |")
        print("| --- | --- | --- | --- |")
        for name, args in steps:
            if opts.only and not name.startswith(opts.only):
                continue
            dt, peak = run(args)
            print(f"| {name} | {dt:.0f} | {peak:.0f} | {peak / weights:.1f} |", flush=True)


if __name__ == "__main__":
    main()
