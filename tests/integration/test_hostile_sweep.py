"""The hostile sweep: every value-taking option of every command, found by walking the
CLI itself (so an option added later is swept too), given values no option accepts:
negative, not-a-number, infinite, overflowing, not a number at all, empty, and a
newline. Each invocation must end within a time limit with a non-zero exit, exactly one
stderr line ``wrapcli: error: ...`` that names the option or its value, no traceback and
no exception class name, and leave every file that existed before byte-identical.
The corpus table (test_bad_inputs.py) holds the hand-written cases with their messages;
this sweep holds the classes that hold for every option at once."""

import hashlib
import re
import shutil
import signal

import pytest
import typer

from wrapcli.cli import app

from cli import runner
from models import PAIRS, make_model_dir, write_jsonl

TINY = ["--preset", "smoke", "--device", "cpu", "-q"]
VALUES = ("-1", "nan", "inf", "-inf", "1e400", "99999999999999999999999", "abc", "", "1\n2")
# Options that take a path to write (an odd file name is a legal one: the output classes
# are the corpus's), free text whose any value is legal, and the flags that need another
# process or machine to mean anything.
SKIPPED = {"-o", "--log", "--plot", "--markdown", "--samples", "--save-dir", "-w", "--prompt", "--lora-targets",
           "--target", "--fail-on", "--split"}  # --split: any name is a legal split, and a file without splits ignores it
CLASS_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception|Warning)\b|Traceback|\bErrno\b")
LIMIT_S = 30


def _kind(param) -> str:
    """int, float or str: what the option's annotation holds (Optional and lists unwrapped)."""
    import typing

    t = param.type_descriptor.annotation
    while typing.get_args(t):
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t.__name__ if t in (int, float) else "str"


def _options() -> list[tuple[str, str, str]]:
    command = typer.main.get_command(app)
    found = []
    for name, sub in sorted(command.commands.items()):
        for param in sub.params:
            if param.param_type_name != "option" or getattr(param, "is_flag", False):
                continue
            flag = max(param.opts, key=len)  # the long name
            if flag not in SKIPPED and param.opts[0] not in SKIPPED:
                found.append((name, flag, _kind(param)))
    return found


def _base(command: str, d) -> list[str]:
    """A sound invocation of ``command`` on the fixtures that the swept option is added to
    (last, so it wins over any default the base gives)."""
    pt, ft = d / "pt.safetensors", d / "ft.safetensors"
    return {
        "train": ["train", *TINY, "--steps", "2", "-o", d / "new.safetensors"],
        "finetune": ["finetune", pt, *TINY, "--task", "count:b", "--steps", "2", "-o", d / "new.safetensors"],
        "revive": ["revive", ft, *TINY, "--task", "count:a", "--scratch", "--steps", "2", "--seeds", "1"],
        "prune": ["prune", ft, "--task", "count:a", "--device", "cpu", "-q"],  # prune has no --preset
        "probe": ["probe", pt, "--target", "count", "--device", "cpu", "-q"],
        "compare": ["compare", pt, ft, "--task", "count:a", "--device", "cpu", "-q"],
        "eval": ["eval", pt, "--task", "count:a", "--device", "cpu", "-q"],
        "export": ["export", pt, d / "exported"],
        "compile": ["compile", "counter", "-o", d / "compiled.safetensors", "-q"],
        "facts": ["facts", d / "world", "-q"],
        "quantize": ["quantize", ft, "-o", d / "quantized.safetensors", "-q"],
        "ablate": ["ablate", d / "hf", "--data", d / "pairs.jsonl", "--contrast", d / "pairs.jsonl", "-o", d / "ablated",
                   "--device", "cpu", "-q"],
    }[command]


@pytest.fixture(scope="module")
def world(chain, tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    for name in ("pt.safetensors", "ft.safetensors"):
        shutil.copy(chain / name, d / name)
    make_model_dir(d / "hf")
    write_jsonl(d / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    return d


def _snapshot(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


class _TooLong(Exception):
    pass


def _alarm(signum, frame):
    raise _TooLong


@pytest.mark.slow
@pytest.mark.parametrize("command,flag,kind", _options())
def test_every_option_refuses_values_no_option_accepts(world, command, flag, kind):
    """Numbers: every value is refused as a usage error (exit 2) — a float option may take
    the finite 1e23, nothing else. Text: the empty value is a usage error; the others are
    refused in one line (a file option's value names a file that is not there: exit 1)."""
    before, known = _snapshot(world), set(world.rglob("*"))
    failures = []
    values = [v for v in VALUES if not (kind == "float" and v == "99999999999999999999999")]
    for value in values:
        args = [str(a) for a in _base(command, world)] + [flag, value]
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(LIMIT_S)
        try:
            result = runner.invoke(app, args)
        except _TooLong:
            failures.append(f"{value!r}: still running after {LIMIT_S} s")
            continue
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        new = sorted(set(world.rglob("*")) - known)
        for path in reversed(new):  # a refused run writes nothing; clear it for the next value
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if any(p.is_file() for p in new):
            failures.append(f"{value!r}: wrote {', '.join(p.name for p in new)}")
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        shown = " | ".join(lines)[:300]
        usage = kind != "str" or value == ""
        if result.exit_code == 0:
            failures.append(f"{value!r}: accepted (exit 0)")
        elif result.exception is not None and not isinstance(result.exception, SystemExit):
            failures.append(f"{value!r}: uncaught {type(result.exception).__name__}")
        elif len(lines) != 1 or not lines[0].startswith("wrapcli: error:"):
            failures.append(f"{value!r}: stderr {shown!r}")
        elif flag not in lines[0] and not (value.strip() and value.split("\n")[0] in lines[0]):
            failures.append(f"{value!r}: names neither {flag} nor the value: {shown!r}")
        elif CLASS_NAME.search(lines[0]):
            failures.append(f"{value!r}: class name in {shown!r}")
        elif usage and result.exit_code != 2:
            failures.append(f"{value!r}: exit {result.exit_code} for a usage error: {shown!r}")
        elif "unexpected failure" in lines[0]:
            failures.append(f"{value!r}: not foreseen: {shown!r}")
    assert _snapshot(world) == before, "a fixture changed"
    assert not failures, f"{command} {flag}: " + "; ".join(failures)
