"""Atomic output and content hashes.

Every artefact is written to a temporary file beside its destination and renamed into
place only when complete (DESIGN.md decision 6), so a killed run never leaves a
half-written checkpoint that ``make`` would take as done, and a failed run never
damages a file that was already there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from wrapcli.errors import UsageError, WrapError


def check_writable(dest: str | Path, directory: bool = False) -> None:
    """Raise a WrapError now if ``dest`` could not be written later."""
    dest = Path(dest)
    parent = dest.parent
    if not parent.is_dir():
        raise WrapError(f"cannot write {dest}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise WrapError(f"cannot write {dest}: directory {parent} is not writable")
    if not directory and dest.is_dir():
        raise WrapError(f"cannot write {dest}: it is a directory")
    if directory and dest.exists() and not dest.is_dir():
        raise WrapError(f"cannot write {dest}: it exists and is not a directory")


def check_outputs(*paths, inputs=()) -> None:
    """Before any work: every output a command was given (None and '-' = stdout skip) is
    distinct from every input and every other output, and files are writable."""
    check_distinct(paths, inputs)
    for path in paths:
        if path and str(path) != "-":
            check_writable(path)


def check_distinct(outputs, inputs=()) -> None:
    """Refuse (usage error) an output that is also an input or another output, after
    resolving links and '..', and an empty output name."""
    seen: dict[Path, str] = {}
    given = {_identity(p): str(p) for p in inputs if p and str(p) != "-"}
    for path in outputs:
        if path is None or str(path) == "-":
            continue
        if not str(path).strip():
            raise UsageError("an output file name is empty")
        key = _identity(path)
        if key in given:
            raise UsageError(f"output {path} is also an input ({given[key]}): it would be overwritten")
        if key in seen:
            raise UsageError(f"{path} is given for two outputs ({seen[key]} and {path})")
        seen[key] = str(path)


def _identity(path) -> Path:
    return Path(path).expanduser().resolve()


def check_replaceable(dest: Path) -> None:
    """A directory output may replace only a model directory (config.json or wrapcli.json)
    or an empty one, never the current directory or one that holds it."""
    here = Path.cwd().resolve()
    real = dest.resolve()
    if real == here or real in here.parents:
        raise WrapError(f"will not replace {dest}: it is the current directory or holds it")
    if dest.is_dir() and any(dest.iterdir()) and not any((dest / f).is_file() for f in MODEL_DIR_MARKERS):
        raise WrapError(f"will not replace {dest}: it holds files and is not a model directory "
                        f"(no {' or '.join(MODEL_DIR_MARKERS)}); give a new or empty directory")


MODEL_DIR_MARKERS = ("config.json", "wrapcli.json")


@contextlib.contextmanager
def atomic_path(dest: str | Path, directory: bool = False):
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` on success."""
    dest = Path(dest)
    check_writable(dest, directory)
    if directory and dest.exists():
        check_replaceable(dest)
    parent = dest.parent
    name = dest.resolve().name
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    else:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp/mkdtemp create owner-only files; artefacts get the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)
        if directory and dest.exists():
            # move the old directory aside first, so a failed rename cannot lose it
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=parent))
            os.replace(dest, old / name)
            try:
                os.replace(tmp, dest)
            except BaseException:
                os.replace(old / name, dest)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if directory else tmp.unlink(missing_ok=True)
        raise


def write_text(dest: str | Path, text: str) -> None:
    """Write ``text`` atomically; ``-`` means stdout."""
    if str(dest) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file, or of a directory's files in sorted order."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
