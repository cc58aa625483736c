"""The report envelope every command's JSON output shares (docs/design.md decision 5).

Every key of the envelope and of each command's ``results`` is defined, with its
meaning, in wrapcli/report/schema.py and documented in docs/reports.md (generated from it).
The envelope records what a reader needs to reproduce or distrust a figure: versions of
wrapcli and of the numerical stack, the git commit of a checkout, the CPU flags that
change numerics, the thread count and the resolved precision.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from wrapcli import __version__
from wrapcli.core.files import sha256, write_text

# Flags that select different matrix kernels, and so different last bits of a result.
NUMERIC_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def envelope(schema: str, results: dict, inputs=(), seed=None, device="cpu", precision=None) -> dict:
    from wrapcli.report.schema import ENVELOPE_VERSION, RESULTS_VERSIONS

    return {
        "schema": f"wrapcli.{schema}",
        "schema_version": ENVELOPE_VERSION,
        "results_version": RESULTS_VERSIONS[schema],
        "wrapcli_version": __version__,
        "created": now(),
        "command": command_line(),
        "inputs": [{"path": str(p), "sha256": sha256(p)} for p in inputs],
        "seed": seed,
        "device": str(device),
        "precision": precision,
        "environment": environment(str(device)),
        "results": results,
    }


def environment(device: str) -> dict:
    import numpy
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": _cpu()[0],
        "cpu_flags": _cpu()[1],
        "torch_threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else _cpu()[0],
        "git_commit": _git_commit(),
    }


@functools.lru_cache(maxsize=1)
def _cpu() -> tuple[str, list[str]]:
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return name, [f for f in NUMERIC_CPU_FLAGS if f in flags]


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """HEAD of the checkout wrapcli runs from (with ``-dirty`` for uncommitted changes),
    or None when it is installed from a package."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def now() -> str:
    """The time stamp of a report or lineage step: now, or ``SOURCE_DATE_EPOCH`` (the
    reproducible-builds convention) so that a rerun writes byte-identical files."""
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch.isdigit()
            else _dt.datetime.now(_dt.timezone.utc))
    return when.isoformat(timespec="seconds")


def command_line() -> list[str]:
    return ["wrapcli", *sys.argv[1:]]


def write(report: dict, out: str | None, print_json: bool) -> None:
    """Write a report to ``out`` (atomic; ``-`` = stdout) and/or print it (``--json``).
    With ``WRAPCLI_VALIDATE_REPORTS=1`` (the test suite sets it) a report that departs
    from wrapcli/report/schema.py is an error instead."""
    if os.environ.get("WRAPCLI_VALIDATE_REPORTS") == "1":
        from wrapcli.report.schema import validate

        problems = validate(report)
        if problems:
            raise RuntimeError(f"{report.get('schema')} report departs from its schema: {'; '.join(problems[:5])}")
    text = json.dumps(report, indent=2) + "\n"
    if out:
        write_text(out, text)
    if print_json and out != "-":
        sys.stdout.write(text)
