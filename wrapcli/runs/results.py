"""The report results that the built-in and the compiled (Tracr) runs both assemble, built
in one place so that the two shapes cannot drift (schemas PRUNE and PROBE)."""

from __future__ import annotations

import numpy as np

from wrapcli.analyses.probing import class_balance


def probe_result(ckpt_path, *, what, data, labels, split_, init_seeds, reference, layers, device, lens=None,
                 target_task=None, prompt_task=None, placement=None) -> dict:
    """The report's results (schema PROBE); ``split_`` is (train, test, grouped) or None
    when nothing was probed (the logit lens alone)."""
    balance, grouped = {}, False
    if split_ is not None:
        train, test, grouped = split_
        balance = {side: class_balance(labels[ix]) for side, ix in (("train", train), ("test", test))}
    result = {
        "checkpoint": str(ckpt_path),
        "target": what,
        "target_task": target_task,
        "prompt_task": prompt_task,
        "data": str(data) if data else None,
        "n": int(len(labels)),
        "n_classes": int(len(np.unique(labels))),
        "split": {"grouped": grouped, "class_balance": balance},
        "random_init_seeds": init_seeds,
        "reference": str(reference) if reference else None,
        "layers": layers,
        "device": device,
    }
    if placement is not None:
        result["placement"] = placement
    if lens is not None:
        result["lens"] = lens
    return result


def prune_result(ckpt_path, *, task, data, also, kind, iterative, n_units, batches, batch_size, pruned, sweep,
                 written, precision, device, reverted, scoring_spurious) -> dict:
    """The report's results (schema PRUNE), for built-in and compiled models alike.
    ``scoring_spurious`` is None where the scoring strings are not drawn by share: the
    user's records, or a compiled counter's natural inputs."""
    return {
        "checkpoint": str(ckpt_path),
        "task": task,
        "data": str(data) if data is not None else None,
        "also": list(also),
        "unit": kind,
        "iterative": iterative,
        "n_units": n_units,
        "batches": batches,
        "batch_size": batch_size,
        "pruned": pruned,
        "sweep": sweep,
        "written": written,
        "precision": precision,
        "device": device,
        "operation": "revert" if reverted else "zero",
        "revert_to": reverted,
        "scoring_spurious": scoring_spurious,
    }
