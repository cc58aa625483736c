"""The report envelope every command's JSON output shares (DESIGN.md decision 5).

Schema (version 1), every key:

- ``schema``: which report this is, e.g. ``wrapcli.eval``, ``wrapcli.train``;
- ``schema_version``: integer, bumped when a key changes meaning;
- ``wrapcli_version``: the package version that wrote it;
- ``created``: UTC time, ISO 8601;
- ``command``: the command line, as a list of arguments;
- ``inputs``: list of ``{"path", "sha256"}`` for every file read;
- ``seed``: the seed that makes the results reproducible (null if none applies);
- ``device``: where the computation ran (``cpu``, ``cuda``, ``cuda:0`` ...);
- ``results``: the command's own results, documented in that command's module.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys

from wrapcli import __version__
from wrapcli.files import sha256, write_text

SCHEMA_VERSION = 1


def envelope(schema: str, results: dict, inputs=(), seed=None, device="cpu") -> dict:
    return {
        "schema": f"wrapcli.{schema}",
        "schema_version": SCHEMA_VERSION,
        "wrapcli_version": __version__,
        "created": now(),
        "command": command_line(),
        "inputs": [{"path": str(p), "sha256": sha256(p)} for p in inputs],
        "seed": seed,
        "device": str(device),
        "results": results,
    }


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def command_line() -> list[str]:
    return ["wrapcli", *sys.argv[1:]]


def write(report: dict, out: str | None, print_json: bool) -> None:
    """Write a report to ``out`` (atomic; ``-`` = stdout) and/or print it (``--json``)."""
    text = json.dumps(report, indent=2) + "\n"
    if out:
        write_text(out, text)
    if print_json and out != "-":
        sys.stdout.write(text)
