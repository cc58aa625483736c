"""Atomic output and content hashes.

Every artefact is written to a temporary file beside its destination and renamed into
place only when complete (docs/design.md decision 6), so a killed run never leaves a
half-written checkpoint that ``make`` would take as done, and a failed run never
damages a file that was already there. A run killed outright (SIGKILL) leaves its
temporary behind; the next write of the same output removes it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from wrapcli.core.errors import UsageError, WrapError

TEMP_TAG = "wp"  # temporaries are .NAME.wpPID.XXXX.tmp: the PID tells a live writer from a killed one


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


# What each kind of output is, the names it may have, and whether stdout ("-") can take it.
FORMATS = {
    "report": ("a JSON report", (".json",), True),
    "samples": ("JSON lines", (".jsonl", ".json"), True),
    "markdown": ("Markdown", (".md", ".markdown", ".txt"), True),
    "plot": ("a figure", (".png", ".pdf", ".svg"), False),
    "checkpoint": ("a safetensors checkpoint", (".safetensors", ""), False),  # "": an HF directory
}
# Suffixes that promise a format; an output named with one of them must be that format.
KNOWN_SUFFIXES = {".json", ".jsonl", ".md", ".markdown", ".png", ".pdf", ".svg", ".jpg", ".jpeg",
                  ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".npz", ".h5"}


def check_model_outputs(out, log, inputs=()) -> None:
    """A run that writes a model (-o) and a report (--log): neither is an input or the
    other, and the report's place and name are checked before the work, not after it."""
    check_distinct([out, log], inputs)
    check_outputs(log)
    check_format(log, "report", "--log")


def check_format(path, kind: str, option: str) -> None:
    """Refuse (usage error) an output whose name contradicts what is written there
    (``-w pw.bin`` for safetensors, ``-o r.safetensors`` for a JSON report), and ``-``
    for a binary output."""
    if path is None:
        return
    what, suffixes, stdout_ok = FORMATS[kind]
    if str(path) == "-":
        if not stdout_ok:
            raise UsageError(f"{option} -: {what} cannot go to stdout; give a file name")
        return
    suffix = Path(path).suffix.lower()
    if suffix not in suffixes and suffix in KNOWN_SUFFIXES:
        raise UsageError(f"{option} {path}: the name says {suffix or 'no format'}, but {what} is written there "
                         f"(use {' or '.join(s for s in suffixes if s)})")


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
        inside = next((name for k, name in given.items() if key in k.parents), None)
        if inside is not None:
            raise UsageError(f"output {path} contains an input ({inside}): replacing it would delete that input")
        if key in seen:
            raise UsageError(f"{path} is given for two outputs ({seen[key]} and {path})")
        seen[key] = str(path)


def _identity(path) -> Path:
    return Path(path).expanduser().resolve()


def check_replaceable(dest: Path, markers=None, force: bool = False) -> None:
    """A directory output may replace only an empty directory or an earlier output of
    wrapcli (a model directory wrapcli wrote holds its wrapcli.json; other outputs name
    their own ``markers``), or with ``force`` (the commands' --force) any directory; never
    the current directory or one that holds it. A third-party model directory (config.json
    without wrapcli.json) is replaced only with --force."""
    markers = markers or MODEL_DIR_MARKERS
    here = Path.cwd().resolve()
    real = dest.resolve()
    if real == here or real in here.parents:
        raise WrapError(f"will not replace {dest}: it is the current directory or holds it")
    if not force and dest.is_dir() and any(dest.iterdir()) and not any((dest / f).is_file() for f in markers):
        what = ("a model directory wrapcli did not write" if (dest / "config.json").is_file()
                else "a directory wrapcli did not write")
        raise WrapError(f"will not replace {dest}: it is {what} (no {' or '.join(markers)}); "
                        "give a new or empty directory, or --force")


MODEL_DIR_MARKERS = ("wrapcli.json",)  # what export, finetune --data, train --data and prune -w write


def remove_stale_temporaries(parent: Path, name: str) -> list[Path]:
    """Remove the temporaries an earlier, killed run left for output ``name``: hidden
    ``.NAME.wpPID.*.tmp`` files or folders whose process PID no longer runs."""
    removed = []
    for p in parent.glob(f".{glob.escape(name)}.{TEMP_TAG}*.tmp"):
        pid = p.name[len(name) + 2 + len(TEMP_TAG):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def atomic_path(dest: str | Path, directory: bool = False, markers=None, force: bool = False):
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` on success. An
    existing directory is replaced only as ``check_replaceable`` allows. A symbolic link
    is written through to its target; a special file (a device such as /dev/null, a FIFO)
    is written into, never renamed over."""
    dest = Path(dest)
    if dest.is_symlink():
        dest = dest.resolve()
    if not directory and dest.exists() and not dest.is_file() and not dest.is_dir():
        with _written_into(dest) as tmp:
            yield tmp
        return
    check_writable(dest, directory)
    if directory and dest.exists():
        check_replaceable(dest, markers, force)
    parent = dest.parent
    name = dest.resolve().name
    remove_stale_temporaries(parent, name)
    prefix = f".{name}.{TEMP_TAG}{os.getpid()}."
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    else:
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=parent)
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
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True) if directory else tmp.unlink(missing_ok=True)
        reason = write_failure(e)
        if reason:
            raise WrapError(f"cannot write {dest}: {reason}") from None
        raise


def write_failure(e: BaseException) -> str | None:
    """Why writing failed, in words, when ``e`` is a failure of the file system (a full
    disk, a quota, an I/O error), whether Python's own OSError or a library's error that
    carries the OS error's number in its text (safetensors: "I/O error: No space left on
    device (os error 28)"); None for anything else."""
    import errno
    import re

    if isinstance(e, WrapError):
        return None
    number = e.errno if isinstance(e, OSError) else None
    if number is None:
        found = re.search(r"\(os error (\d+)\)", str(e))
        number = int(found.group(1)) if found else None
    if number is None:
        return None
    if number == errno.ENOSPC:
        return "no space left on the device (nothing was left behind)"
    if number == errno.EDQUOT:
        return "disk quota exceeded (nothing was left behind)"
    return f"{os.strerror(number).lower()} (nothing was left behind)"


@contextlib.contextmanager
def _written_into(dest: Path):
    """A special file (device, FIFO): the output is made in a private temporary, then
    copied into ``dest`` as a stream."""
    fd, tmp_name = tempfile.mkstemp(prefix="wrapcli.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    except BaseException as e:
        reason = write_failure(e)
        if reason:
            raise WrapError(f"cannot write {dest}: {reason.removesuffix(' (nothing was left behind)')}") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text(dest: str | Path, text: str) -> None:
    """Write ``text`` atomically; ``-`` means stdout."""
    if str(dest) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


_HASHES: dict[tuple, str] = {}


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file, or of a directory's files in sorted order. Remembered for
    the process while every file keeps its size and modification time, so a checkpoint
    that is loaded and then named in a report is read once, not twice."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    key = (str(path.resolve()), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key in _HASHES:
        return _HASHES[key]
    h = hashlib.sha256()
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    _HASHES[key] = h.hexdigest()
    return _HASHES[key]
