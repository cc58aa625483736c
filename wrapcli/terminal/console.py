"""Terminal output: the stderr console, progress bars, errors as one line (the tables
themselves are wrapcli/terminal/tables.py).

Channels (docs/design.md decision 6): artefacts go to ``-o``; ``--json`` prints the report to
stdout; everything for humans goes to stderr and switches off with ``--quiet`` or when
stderr is not a terminal (progress) — tables still print unless ``--quiet``.
Exit codes: 0 success, 1 runtime or data error, 2 usage error (typer's own or UsageError).
"""

from __future__ import annotations

import contextlib
import sys

import typer

from wrapcli.core.errors import UsageError, WrapError


def stderr(quiet: bool = False):
    from rich.console import Console

    # No markup or emoji: paths and task names ("count:b", "[x]") must print as they are.
    return Console(stderr=True, quiet=quiet, highlight=False, emoji=False, markup=False)


@contextlib.contextmanager
def errors_as_exit(debug: bool = False):
    """Turn a WrapError (or any unexpected failure) into one line on stderr + exit 1."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except WrapError as e:
        if debug:
            raise
        print("wrapcli: error: " + " ".join(str(e).split("\n")), file=sys.stderr)  # a name with a newline stays one line
        raise typer.Exit(2 if isinstance(e, UsageError) else 1) from None
    except Exception as e:  # unexpected: still one line unless --debug, in words, not a class name
        if debug:
            raise
        print(f"wrapcli: error: {unexpected(e)} (rerun with --debug for a traceback)", file=sys.stderr)
        raise typer.Exit(1) from None


def unexpected(e: BaseException) -> str:
    """An unexpected failure in one line of words (never an exception class's name)."""
    import errno

    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, MemoryError):
        return "out of memory; try a smaller --eval-size, --batch-size or model"
    if isinstance(e, RecursionError):
        return "an input is nested too deeply to read"
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"no space left on the device while writing {e.filename or 'an output'}"
    if isinstance(e, OSError):
        where = f" ({e.filename})" if e.filename else ""
        return f"cannot read or write a file{where}: {e.strerror or msg}"
    if isinstance(e, UnicodeError):
        return f"text that is not valid Unicode: {msg}"
    return f"unexpected failure: {msg}" if msg else "unexpected failure"


@contextlib.contextmanager
def progress(total: int, description: str, quiet: bool):
    """A rich progress bar on stderr; yields ``update(step, metrics)``. Silent (a no-op)
    with ``--quiet`` or when stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        yield lambda step, metrics: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
        console=stderr(), transient=False,
    )
    shown = {}

    def update(step: int, metrics: dict) -> None:
        for key in ("loss", "tokens_per_s"):
            if metrics.get(key) is not None:
                shown[key] = metrics[key]
        if metrics.get("accuracy"):
            shown["acc"] = " ".join(f"{k}={v:.2f}" for k, v in metrics["accuracy"].items())
        info = "  ".join(
            [f"loss {shown['loss']:.3f}" if "loss" in shown else "",
             f"{shown['tokens_per_s']:,.0f} tok/s" if "tokens_per_s" in shown else "",
             shown.get("acc", "")]
        )
        bar.update(task, completed=step, info=info)

    with bar:
        task = bar.add_task(description, total=total, info="")
        yield update


