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

from wrapcli.errors import WrapError


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


def check_outputs(*paths) -> None:
    """check_writable for every output a command was given (None and '-' = stdout skip)."""
    for path in paths:
        if path and str(path) != "-":
            check_writable(path)


@contextlib.contextmanager
def atomic_path(dest: str | Path, directory: bool = False):
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` on success."""
    dest = Path(dest)
    check_writable(dest, directory)
    parent = dest.parent
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create owner-only files; artefacts get the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)
        if directory and dest.exists():
            shutil.rmtree(dest)
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
