"""Whether a checkpoint can run a synthetic task: same vocabulary, long enough context."""

from __future__ import annotations

from wrapcli.core.errors import UsageError, WrapError
from wrapcli.tasks import vocab
from wrapcli.tasks.sequences import seq_len
from wrapcli.tasks.spec import TaskSpec, parse_components


def check_compatible(ckpt, spec: TaskSpec) -> None:
    if ckpt.vocab is None:
        raise WrapError(
            f"{ckpt.path}: has no wrapcli vocabulary, so built-in tasks cannot be encoded "
            "for it; give it user data (a JSONL file) instead"
        )
    if list(ckpt.vocab) != list(vocab.TOKENS):
        first = next(
            (i for i, (a, b) in enumerate(zip(ckpt.vocab, vocab.TOKENS)) if a != b),
            min(len(ckpt.vocab), len(vocab.TOKENS)),
        )
        raise WrapError(f"{ckpt.path}: vocabulary differs from this wrapcli's at token id {first}")
    n_pos = ckpt.context_length or 0
    if n_pos < seq_len(spec.text_len):
        raise WrapError(
            f"task needs {seq_len(spec.text_len)} positions (text_len={spec.text_len}) but "
            f"{ckpt.path} has {n_pos}"
        )


def task_for(ckpt, task: str | None) -> TaskSpec:
    """The task to run on ``ckpt``: its own spec, or ``task`` (short form) with the
    checkpoint's text length, window, prior etc. so the data matches its training.
    A new task does not inherit the checkpoint's spurious fraction: evaluation builds
    its own with/without sets and fine-tuning sets it explicitly."""
    base = ckpt.task_spec()
    if task is None:
        if base is None:
            raise WrapError(f"{ckpt.path}: records no task; pass --task")
        spec = base
    elif base is None:
        spec = TaskSpec(components=parse_components(task))
    else:
        spec = base.replace(components=parse_components(task), spurious=0.0)
    check_compatible(ckpt, spec)
    return spec


def single_component(spec: TaskSpec, what: str, given: str):
    """The one (family, operand) ``spec`` evaluates, e.g. count:a; ``what`` (a command or
    flag) needs exactly one, so anything else is a usage error naming ``given``."""
    comps = spec.eval_components()
    if len(comps) != 1:
        raise UsageError(f"{what} needs one task with a fixed operand (e.g. count:a), got {given!r}")
    return comps[0]
