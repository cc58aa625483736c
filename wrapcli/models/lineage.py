"""A checkpoint's history and the models it is held against: one lineage entry per step
that produced the weights (docs/checkpoint-format.md), and the checks that a control, a
reference or a revert-to model is neither the audited model itself nor another shape."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wrapcli.core.errors import UsageError, WrapError
from wrapcli.core.files import sha256

if TYPE_CHECKING:
    from wrapcli.models.checkpoint import Checkpoint


def lineage_entry(kind: str, parent_sha256, task: str, seed: int, final: dict, *, steps: int | None = None,
                  lr: float | None = None, precision: str | None = None, **extra) -> dict:
    """One lineage record (docs/checkpoint-format.md); ``accuracy`` keeps the natural-set
    accuracy per component so later steps (revive's threshold) know what the model could
    do. ``steps``, ``lr`` and ``precision`` describe a training step; a prune has none."""
    from wrapcli import __version__
    from wrapcli.report import envelope as reports

    training = {"steps": steps, "lr": lr, "precision": precision} if steps is not None else {}
    return {
        "kind": kind,
        "parent_sha256": parent_sha256,
        "command": reports.command_line(),
        "seed": seed,
        **training,
        "task": task,
        "wrapcli_version": __version__,
        "created": reports.now(),
        "accuracy": {c: rows["natural"]["accuracy"] for c, rows in final.items() if "natural" in rows},
        **extra,
    }


def check_not_itself(audited, others, option: str) -> None:
    """Refuse a control, reference or revert-to model that is the checkpoint under audit
    itself (the same file, or a copy with the same sha256): a comparison with itself
    measures nothing."""
    a = Path(audited)
    for other in [others] if isinstance(others, (str, Path)) else others:
        b = Path(other)
        if not (a.exists() and b.exists()):
            continue  # the load that follows names the missing path
        if a.resolve() == b.resolve():
            raise UsageError(f"{option} {other}: is the checkpoint under audit itself; give a model that differs")
        if a.is_dir() == b.is_dir() and sha256(a) == sha256(b):
            raise UsageError(f"{option} {other}: a copy of the checkpoint under audit {audited} (the same sha256); "
                             "give a model that differs")


def check_same_shapes(ref: Checkpoint, other: Checkpoint, ref_name: str, other_name: str) -> None:
    """Refuse a control or reference whose parameters differ in name or shape, or whose
    vocabulary differs, naming the first difference."""
    check_same_signature(signature(ref), signature(other), ref_name, other_name)


def signature(ck: Checkpoint) -> tuple[dict, list | None]:
    """What ``check_same_shapes`` compares: parameter name -> shape, and the vocabulary."""
    return {k: tuple(v.shape) for k, v in ck.model.state_dict().items()}, ck.vocab


def check_same_signature(ref: tuple, other: tuple, ref_name: str, other_name: str) -> None:
    (a, vocab_a), (b, vocab_b) = ref, other
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            raise WrapError(
                f"{other_name} does not match {ref_name}: parameter {k} is "
                f"{a.get(k, 'absent')} vs {b.get(k, 'absent')}"
            )
    if vocab_a != vocab_b:
        raise WrapError(f"{other_name} has a different vocabulary from {ref_name}")
