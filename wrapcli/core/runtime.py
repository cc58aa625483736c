"""Where and how numbers are computed: the device, the precision and the thread count.

Numerics are pinned so that the same command gives the same bits on one machine:

- Precision: ``auto`` is bf16 autocast on CUDA and fp32 on every CPU. bf16 on a CPU is
  an opt-in for speed (``--precision bf16``; fast only where the CPU has AMX bf16 units),
  and a report made with it says so in its ``precision`` field. A small-LR fine-tune is
  sensitive enough that bf16 and fp32 runs of one command reach different accuracies
  (REPRODUCTION.md), so the study's figures are fp32.
- Threads: a matrix product split over a different number of threads sums in another
  order, and after 60 steps two runs differ by about 1e-5 — enough to move a small-LR
  fine-tune. ``wrapcli --threads N`` (or ``WRAPCLI_THREADS``) pins torch's intra-op
  thread count, so a run is reproducible whatever the machine's core count; the study's
  Makefile pins 1 thread per job and runs jobs side by side instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from wrapcli.core.errors import UsageError, WrapError

# One vocabulary for every --precision; each command says which it computes in (autocast
# commands fp32 or bf16; compare and probe also load weights in fp16).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
THREADS_ENV = "WRAPCLI_THREADS"


def resolve_precision(name: str, device: str, allowed: tuple[str, ...] = ("fp32", "bf16")) -> str:
    """``auto`` -> bf16 on CUDA, fp32 on CPU; the others as given, if the command computes
    in them (``allowed``): autocast runs fp32 or bf16, never fp16 without a loss scaler."""
    if name not in PRECISIONS:
        raise UsageError(f"--precision: unknown precision {name!r} (known: {', '.join(PRECISIONS)})")
    resolved = name if name != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    if resolved not in allowed:
        raise UsageError(f"--precision {name}: this command computes in {' or '.join(allowed)} "
                         "(fp16 loads the weights in compare and probe only)")
    return resolved


def threads_setting() -> int | None:
    """The pinned intra-op thread count (``WRAPCLI_THREADS``), or None for torch's default."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--threads / {THREADS_ENV}: expected a whole number >= 1, got {raw!r}")
    return check_threads(n)


def check_threads(n: int) -> int:
    """``n`` if the machine can run that many threads at once (more only contend, and an
    absurd count fails inside the thread libraries)."""
    cpus = machine_cpus()
    if n > cpus:
        raise UsageError(f"--threads / {THREADS_ENV}: {n} threads, but this machine runs {cpus} at once "
                         "(more would only contend; give at most that)")
    return n


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def pin_threads() -> None:
    """Apply the pinned thread count to torch (idempotent)."""
    n = threads_setting()
    if n is None:
        return
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when available, else cpu; an unusable device is a WrapError.
    Every command resolves its device first, so the thread count is pinned here too."""
    import torch

    from wrapcli.core.distributed import local_device

    pin_threads()
    if name == "auto":
        return local_device("cuda") if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WrapError(f"--device: {name!r} requested but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise UsageError(f"--device: unknown device {name!r} (auto, cpu, cuda, cuda:N)")
    return local_device(name)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def refuse_short_memory(need: int, message, error=WrapError) -> None:
    """Every memory refusal: raise ``error(message(need_gib, free_gib))`` when ``need``
    bytes, estimated before anything is allocated, exceed what is available now."""
    free = available_memory()
    if free is not None and need > free:
        raise error(message(f"{need / 2**30:.1f}", f"{free / 2**30:.1f}"))


def check_memory(option: str, value: int, need: int, what: str) -> None:
    """Refuse (usage error) a size option whose memory exceeds what is available now,
    naming the option and the memory."""
    refuse_short_memory(need, lambda need_gib, free_gib: (
        f"{option} {value}: {what} would need about {need_gib} GiB, but {free_gib} GiB of memory is available; "
        f"use a smaller {option}"), UsageError)


def shape_of(config) -> tuple[int, int, int, int]:
    """(n_layers, d_model, n_heads, vocabulary) of a Hugging Face config."""
    return (getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 1),
            getattr(config, "hidden_size", None) or getattr(config, "n_embd", 1),
            getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1),
            getattr(config, "vocab_size", 1))


def step_bytes(config, seq_len: int) -> int:
    """A lower estimate of the bytes one sequence of ``seq_len`` tokens takes through a
    training step in fp32: the residual stream and MLP activations kept for the backward
    pass (about 16 d_model floats per token per layer), the attention maps (n_heads x T^2
    per layer) and the logits with their gradient (3 x vocabulary per token)."""
    layers, width, heads, vocab = shape_of(config)
    return 4 * seq_len * (layers * (16 * width + 2 * heads * seq_len) + 3 * vocab)


def check_batch_memory(option: str, batch_size: int, config, seq_len: int) -> None:
    check_memory(option, batch_size, batch_size * step_bytes(config, seq_len), "a training or scoring step")


MEMORY_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def placement(device_map: str | None, max_memory: str | None) -> dict | None:
    """from_pretrained's big-model arguments for ``--device-map``/``--max-memory``
    (accelerate's dispatch), or None when neither is given. ``max_memory`` reads
    ``DEVICE=SIZE,...`` with DEVICE ``cpu``, a GPU index or ``cuda:N`` and SIZE like
    ``20GiB`` or ``512MB``."""
    import re

    if device_map is None:
        if max_memory is not None:
            raise UsageError("--max-memory goes with --device-map")
        return None
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise WrapError("--device-map needs accelerate: pip install 'wrapcli[big]'") from None
    budget = None
    if max_memory is not None:
        budget = {}
        for part in (p.strip() for p in max_memory.split(",")):
            where, _, size = part.partition("=")
            where = where.strip().lower().removeprefix("cuda:")
            m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b)", size.strip().lower())
            if not (where == "cpu" or where.isdigit()) or m is None:
                raise UsageError(f"--max-memory: {part!r} is not DEVICE=SIZE (e.g. 0=20GiB or cpu=64GiB)")
            key = "cpu" if where == "cpu" else int(where)
            if key in budget:
                raise UsageError(f"--max-memory: {where} is given twice")
            budget[key] = int(float(m.group(1)) * MEMORY_UNITS[m.group(2).upper()])
    return {"device_map": device_map, "max_memory": budget}
