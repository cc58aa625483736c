"""Wall time, peak memory and seconds per training step of the third-party audit's --data
commands on real-sized models, beside a plain Hugging Face (+ peft) loop in the same run.

Builds random-weight Llama configs locally (nothing is downloaded) at the shape of a
135M model (SmolLM-135M), a ~0.5B (Qwen2-0.5B), a ~1.5B (Qwen2-1.5B) or an 8B one
(Llama-3-8B), each with a word-level tokenizer of that vocabulary size; writes 60
prompt/answer records and 120 text/label records; then runs each row's command as its
own process and prints its wall time, its peak resident memory (the process's own
high-water RSS, VmHWM; for the torchrun rows the largest rank's), its peak GPU memory on
CUDA (torch.cuda.max_memory_allocated), each beside the fp32 weights' size, and for the
training rows the median seconds per step (the time between two optimizer steps, read
from the training loop's step callback; the median leaves out the steps that also score
the held-out records). The models are built in a process of their own, so that the
parent of the rows stays small.

The plain rows are written here: AutoModelForCausalLM, the same records (loss on the
answer tokens), the same batch size and steps, AdamW, bf16 autocast on CUDA and fp32 on
the CPU like wrapcli's ``--precision auto``, and for ``+ peft`` the same rank and targets
(every linear map but the output head). Their ratio to the revive rows is the overhead of
wrapcli's relearning loop.

``--trace`` also reports, for the training rows on the CPU, the peak RSS in each phase
of a training step (backward, gradient clipping, optimizer step, and the rest: forward,
scoring, loading), from a thread that samples the process's RSS every millisecond; this is
how docs/performance.md found where full-parameter training's memory goes.

Run: python benchmarks/bench_audit.py [--size 135m|0.5b|1.5b|8b] [--device cpu|cuda]
       [--rows eval,revive-lora,plain-lora] [--seeds 2] [--steps 10] [--trace]
The attack rows (quantize, eval-shots, ablate, probe-lens) time the battery beyond relearning.
At 8B the full-parameter rows are left out (fp32 weights, gradients and AdamW moments are
128 GB); --rows names them to try anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {  # (hidden, layers, heads, kv heads, intermediate, vocabulary, tied embeddings)
    "135m": (576, 30, 9, 3, 1536, 49_152, True),
    "0.5b": (896, 24, 14, 2, 4864, 151_936, True),
    "1.5b": (1536, 28, 12, 2, 8960, 151_936, True),
    "8b": (4096, 32, 32, 8, 14336, 128_256, False),
}
LORA_RANK = 16
FULL_ROWS = ("revive-full", "revive-ckpt", "revive-fsdp", "revive-ddp", "plain-full", "prune")  # too big for one GPU at 8B


def build(root: Path, size: str, device: str) -> int:
    """base/ and tuned/ (base plus a small perturbation), with a word-level tokenizer,
    built on ``device``. 8B is built and saved in bf16 (16 GB a copy; wrapcli loads it in
    fp32 unless told otherwise); smaller sizes in fp32."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    hidden, layers, heads, kv, inter, vocab, tied = SIZES[size]
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv, intermediate_size=inter, vocab_size=vocab,
                      max_position_embeddings=512, tie_word_embeddings=tied)
    dtype = torch.bfloat16 if size == "8b" else torch.float32
    with torch.device(device):
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            model = LlamaForCausalLM(cfg)
        finally:
            torch.set_default_dtype(default)
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
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the rows' processes need the device's memory
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


# -- what runs in each row's own process --------------------------------------------

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class PhaseTrace:
    """Peak resident memory (MiB) per phase of a training step: a thread samples the RSS
    every millisecond, and backward, clip_grad_norm_ and the optimizer step mark when
    their phase starts and ends (the rest is "other": forward, scoring, loading)."""

    PHASES = ("backward", "clip", "step", "other")

    def __init__(self):
        import threading

        import torch

        import wrapcli.training.loop

        self.phase, self.peaks, self.running = "other", dict.fromkeys(self.PHASES, 0.0), True
        self._wrap(torch.Tensor, "backward", "backward")
        self._wrap(torch.nn.utils, "clip_grad_norm_", "clip")
        self._wrap(torch.optim.AdamW, "step", "step")
        self._wrap(wrapcli.training.loop, "step_one_at_a_time", "step")  # one AdamW.step per tensor
        threading.Thread(target=self._sample, daemon=True).start()

    def _wrap(self, owner, name, phase):
        real = getattr(owner, name)

        def marked(*args, **kwargs):
            outer, self.phase = self.phase, phase
            try:
                return real(*args, **kwargs)
            finally:
                self._note()
                self.phase = outer

        setattr(owner, name, marked)

    def _note(self):
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        self.peaks[self.phase] = max(self.peaks[self.phase], rss)

    def _sample(self):
        while self.running:
            self._note()
            time.sleep(0.001)

    def stop(self) -> dict:
        self.running = False
        return {k: v for k, v in self.peaks.items() if v}


def child_wrapcli(args: list[str], device: str) -> dict:
    """Run ``wrapcli ARGS`` in this process with the training loop's step callback timed."""
    import wrapcli.training.loop as training
    from wrapcli.cli import entry

    stamps: list[float] = []
    real = training.train

    def timed(model, data, cfg, *, on_step=None, **kw):
        stamps.append(-1.0)  # a new curve: no interval across it

        def tick(step, metrics):
            _sync(device)
            stamps.append(time.perf_counter())
            if on_step:
                on_step(step, metrics)

        return real(model, data, cfg, on_step=tick, **kw)

    training.train = timed
    code = entry(args)
    gaps = [b - a for a, b in zip(stamps, stamps[1:]) if a > 0 and b > 0]
    return {"code": code, "step_s": statistics.median(gaps) if gaps else None}


def child_plain(model_dir: str, data: str, device: str, lora: int, steps: int, batch_size: int) -> dict:
    """The plain loop: HF model, answer-token loss, AdamW, torch's own autocast."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    if lora:
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(r=lora, lora_alpha=2 * lora, lora_dropout=0.0,
                                                           target_modules="all-linear", task_type="CAUSAL_LM"))
    rows = [json.loads(line) for line in Path(data).read_text().splitlines() if line.strip()]
    examples = []
    for r in rows:
        p, a = tok(r["prompt"])["input_ids"], tok(r["answer"])["input_ids"]
        examples.append((p + a, [-100] * len(p) + a))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    stamps = []
    pad = tok.pad_token_id
    for step in range(steps):
        batch = [examples[(step * batch_size + i) % len(examples)] for i in range(batch_size)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch], device=device)
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch], device=device)
        mask = (torch.arange(width, device=device)[None] < torch.tensor([len(x) for x, _ in batch], device=device)[:, None])
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            loss = model(input_ids=ids, attention_mask=mask.long(), labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        _sync(device)
        stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"code": 0, "step_s": statistics.median(gaps)}


def child_torchrun(args: list[str], procs: int) -> dict:
    """``torchrun --nproc-per-node PROCS -m wrapcli ARGS``; its peak is the largest rank's
    (``own_peak_mib``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // procs))}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(procs), "-m", "wrapcli", *args], env=env, stdout=subprocess.DEVNULL)
    return {"code": done.returncode, "step_s": None}


def child(spec: dict) -> None:
    device = spec["device"]
    trace = PhaseTrace() if spec.get("trace") and spec["kind"] != "torchrun" else None
    try:
        if spec["kind"] == "torchrun":
            out = child_torchrun(spec["args"], spec["procs"])
        elif spec["kind"] == "plain":
            out = child_plain(spec["model"], spec["data"], device, spec["lora"], spec["steps"], spec["batch_size"])
        else:
            out = child_wrapcli(spec["args"], device)
    except SystemExit as e:
        out = {"code": e.code if isinstance(e.code, int) else 1, "step_s": None}
    if trace:
        out["phases_mib"] = trace.stop()
    if device.startswith("cuda"):
        import torch

        out["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    out["own_peak_mib"] = own_peak_mib(spec["kind"] == "torchrun")
    Path(spec["result"]).write_text(json.dumps(out))
    sys.exit(out["code"])


def own_peak_mib(ranks: bool) -> float | None:
    """This process's own peak RSS: VmHWM, the high-water mark of the memory map it got at
    exec. Not ru_maxrss: Linux carries the parent's peak RSS into a child's ru_maxrss at
    exec, which made every row that needs less than the parent read as the parent's size.
    With ``ranks``, the largest waited-for descendant's (torchrun's ranks', whose parent,
    the launcher, is small)."""
    import resource

    if ranks:
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


# -- the parent: one process per row -------------------------------------------------

def measure(spec: dict, timeout: float) -> dict:
    """Wall seconds and peak RSS (MiB) of one row's process: the peak it reports itself
    (``own_peak_mib``), else the ru_maxrss wait4 gives for that child alone."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as err:
        spec = {**spec, "result": str(Path(tmp) / "result.json")}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)],
                                stdout=subprocess.DEVNULL, stderr=err)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                return {"error": f"over {timeout:.0f} s"}
            time.sleep(0.2)
        dt = time.perf_counter() - t0
        if status != 0:
            err.seek(0)
            lines = [l for l in err.read().strip().splitlines() if l.strip()]
            return {"error": lines[-1][:200] if lines else f"exit status {status}"}
        out = json.loads(Path(spec["result"]).read_text())
    return {**out, "wall_s": dt, "rss_mib": out.get("own_peak_mib") or usage.ru_maxrss / 1024}  # KiB on Linux


def rows(root: Path, device: str, seeds: int, steps: int) -> dict[str, tuple[str, dict]]:
    b, t = str(root / "base"), str(root / "tuned")
    pairs, relearn = str(root / "pairs.jsonl"), str(root / "relearn.jsonl")
    common = ["--device", device, "-q"]
    revive = ["revive", t, "--data", relearn, "--eval-data", pairs, "--reference", b, "--lr", "1e-5",
              "--steps", str(steps), "--batch-size", "8", "--seeds", str(seeds), *common]
    wc = lambda *a: {"kind": "wrapcli", "args": list(a)}  # noqa: E731
    plain = lambda r: {"kind": "plain", "model": t, "data": relearn, "lora": r, "steps": steps + 1,  # noqa: E731
                       "batch_size": 8}
    return {
        "eval": ("eval --data (60 records, fp32 weights)", wc("eval", t, "--data", pairs, "--precision", "fp32", *common)),
        "eval-bf16": ("eval --data --precision bf16 (bf16 weights)", wc("eval", t, "--data", pairs, "--precision", "bf16",
                                                                        *common)),
        "probe": ("probe --data (120 records, grouped)", wc("probe", t, "--data", str(root / "labels.jsonl"),
                                                             "--random-inits", "1", *common)),
        "compare": ("compare --task (60 records, KL depth)", wc("compare", b, t, "--task", pairs, *common)),
        "prune": ("prune --data (neurons, K 0,1,5,10)", wc("prune", t, "--data", pairs, "--k", "0,1,5,10",
                                                            "--batch-size", "16", *common)),
        "revive-full": (f"revive --data ({seeds} seeds x {steps} steps, batch 8)", wc(*revive)),
        "revive-ckpt": (f"revive --data --checkpointing ({seeds} x {steps}, batch 8)", wc(*revive, "--checkpointing")),
        "revive-fsdp": (f"revive --data --fsdp, torchrun 2 processes ({seeds} x {steps}, batch 8; largest rank)",
                        {"kind": "torchrun", "procs": 2, "args": [*revive, "--fsdp"]}),
        "revive-ddp": (f"revive --data, torchrun 2 processes ({seeds} x {steps}, batch 8; largest rank)",
                       {"kind": "torchrun", "procs": 2, "args": revive}),
        "revive-lora": (f"revive --data --lora {LORA_RANK} ({seeds} x {steps}, batch 8)",
                        wc(*revive, "--lora", str(LORA_RANK))),
        "quantize": ("quantize --scheme nf4 (every block linear map)", wc("quantize", t, "-o", str(root / "q"), "-q")),
        "eval-shots": ("eval --data --shots 0,3 (60 records, 3 solved records before each)",
                       wc("eval", t, "--data", pairs, "--shots", "0,3", "--shots-from", relearn, *common)),
        "ablate": ("ablate --data --reference (60 records, every block swept)",
                   wc("ablate", t, "--data", pairs, "--reference", b, "-o", str(root / "ablated"), *common)),
        "probe-lens": ("probe --lens --reference (60 records, the logit lens alone)",
                       wc("probe", t, "--lens", pairs, "--reference", b, *common)),
        "plain-full": ("plain HF loop (AdamW, batch 8)", plain(0)),
        "plain-lora": (f"plain HF + peft loop (rank {LORA_RANK}, batch 8)", plain(LORA_RANK)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=list(SIZES), default="135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", help="comma-separated row keys (default: all that fit)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed to each row")
    ap.add_argument("--trace", action="store_true", help="peak RSS per phase of a training step (CPU)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--build", nargs=3, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        return child(json.loads(opts.child))
    if opts.build:  # in its own process, so that the parent, whose children the rows are, stays small
        root, size, device = opts.build
        return print(build(Path(root), size, device))
    tmp_root = os.environ.get("BENCH_TMP")  # a disk with room: 8B needs 32 GB
    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        built = subprocess.run([sys.executable, __file__, "--build", str(root), opts.size, opts.device],
                               check=True, stdout=subprocess.PIPE, text=True)
        n_params = int(built.stdout.split()[-1])
        records(root)
        weights = n_params * 4 / 2**20
        import torch

        gpu = torch.cuda.get_device_name() if opts.device.startswith("cuda") else None
        print(f"random Llama ({opts.size} shape), {n_params / 1e6:.0f}M parameters, fp32 weights {weights:.0f} MiB, "
              f"vocabulary {SIZES[opts.size][5]:,}; {os.cpu_count()} CPU cores; device {gpu or 'cpu'}; "
              f"torch {torch.__version__}; built in {time.perf_counter() - t0:.0f} s", flush=True)
        table = rows(root, opts.device, opts.seeds, opts.steps)
        two_devices = opts.device == "cpu" or torch.cuda.device_count() >= 2  # the torchrun rows: one rank each
        keys = opts.rows.split(",") if opts.rows else [
            k for k in table if not (opts.size == "8b" and k in FULL_ROWS)
            and (two_devices or table[k][1]["kind"] != "torchrun")]
        unknown = [k for k in keys if k not in table]
        if unknown:
            raise SystemExit(f"--rows: unknown {unknown} (known: {', '.join(table)})")
        mem = "peak GPU MiB" if gpu else "peak RSS MiB"
        print(f"| row | wall s | {mem} | x fp32 weights | s/step |")
        print("| --- | --- | --- | --- | --- |")
        done, traced = {}, {}
        for key in keys:
            name, spec = table[key]
            training = key.startswith(("revive", "plain")) and not gpu
            r = measure({**spec, "device": opts.device, "trace": opts.trace and training}, opts.timeout)
            done[key] = r
            if "error" in r:
                print(f"| {name} | failed: {r['error']} | | | |", flush=True)
                continue
            peak = r["gpu_peak_mib"] if gpu else r["rss_mib"]
            step = f"{r['step_s']:.3f}" if r.get("step_s") else ""
            print(f"| {name} | {r['wall_s']:.0f} | {peak:.0f} | {peak / weights:.2f} | {step} |", flush=True)
            if r.get("phases_mib"):
                traced[key] = r["phases_mib"]
        for ours, theirs in (("revive-full", "plain-full"), ("revive-lora", "plain-lora")):
            a, b = done.get(ours, {}), done.get(theirs, {})
            if a.get("step_s") and b.get("step_s"):
                print(f"{ours} / {theirs} seconds per step: {a['step_s'] / b['step_s']:.2f}")
        for key, phases in traced.items():
            print(f"{key} peak RSS by phase (x fp32 weights): "
                  + ", ".join(f"{k} {v / weights:.2f}" for k, v in phases.items()))


if __name__ == "__main__":
    main()
