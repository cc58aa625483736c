"""`wrapcli ablate`: the directional-ablation attack (wrapcli/analyses/ablation.py): the
direction fine-tuning added at each block, the block chosen on one half of the records by
the accuracy its ablation restores, that accuracy reported on the other half, and the model
written with the chosen direction projected out of its weights (schema ABLATE)."""

from __future__ import annotations

import numpy as np

from wrapcli.core.errors import UsageError
from wrapcli.models.lineage import check_not_itself, check_same_shapes, lineage_entry


def halves(n: int, seed: int) -> tuple[list[int], list[int]]:
    """A seeded split of the records: the first half chooses the block, the second reports."""
    order = np.random.default_rng([seed, 11]).permutation(n).tolist()
    return sorted(order[: n // 2]), sorted(order[n // 2:])


def share(hits: list[bool], rows: list[int]) -> dict:
    """Accuracy of ``hits`` on the records ``rows``, with its count and Wilson interval."""
    from wrapcli.core.stats import wilson

    right = sum(hits[i] for i in rows)
    return {"accuracy": right / len(rows), "n": len(rows), "ci95": list(wilson(right, len(rows)))}


def other_means(ck, ckpt_path, td, reference, contrast, device) -> list:
    """What the fine-tune's means are held against: the reference's on the same records,
    or the fine-tuned model's own on the contrast records."""
    from wrapcli.analyses.ablation import answer_means
    from wrapcli.models import checkpoint
    from wrapcli.models.adapters import Adapter
    from wrapcli.textdata.userdata import IGNORE, text_data

    if reference is None:
        contrasted = text_data(contrast, ckpt_path, ck.model, 0, kinds=("prompt", "choice"))
        return answer_means(Adapter(ck.model), contrasted, device, ignore=IGNORE)
    ref = checkpoint.load(reference, device=device)
    check_same_shapes(ck, ref, str(ckpt_path), f"--reference {reference}")
    return answer_means(Adapter(ref.model), td, device, ignore=IGNORE)


def sweep(adapter, td, dirs, choose, device) -> list[dict]:
    """Each block's direction ablated in turn: every record's answer, and the accuracy on
    the choosing half."""
    from wrapcli.analyses.ablation import ablated
    from wrapcli.models.adapters import resid_hook
    from wrapcli.textdata.textscore import score_records

    rows = []
    for layer, (r, norm) in enumerate(dirs):
        with ablated(adapter, r.to(device)):
            hits = [bool(x["correct"]) for x in score_records(adapter.model, td, device)]
        rows.append({"layer": layer, "hook": resid_hook(layer), "direction_norm": norm, "hits": hits,
                     "choose": share(hits, choose)})
    return rows


def ablate(*, ckpt_path, data, out, reference=None, contrast=None, device="cpu", seed=0, force=False) -> dict:
    """Sweep the source block of the ablated direction, choose it on half the records and
    write the model with it projected out of the weights."""
    from wrapcli.analyses.ablation import answer_means, directions, orthogonalize
    from wrapcli.models import checkpoint
    from wrapcli.models.adapters import Adapter
    from wrapcli.runs.edited import check_output_form, write_edited
    from wrapcli.textdata.textscore import score_records
    from wrapcli.textdata.userdata import IGNORE, text_data

    if (reference is None) == (contrast is None):
        raise UsageError("give --reference (the direction: the fine-tune's mean minus the reference's) or --contrast "
                         "(the records' mean minus the contrast records' mean on the fine-tuned model)")
    if reference is not None:
        check_not_itself(ckpt_path, reference, "--reference")
    check_output_form(ckpt_path, out)
    ck = checkpoint.load(ckpt_path, device=device)
    td = text_data(data, ckpt_path, ck.model, 0, kinds=("prompt", "choice"))
    if td.n_records < 4:
        raise UsageError(f"{data}: {td.n_records} records; ablate chooses its block on half and reports on the "
                         "other half, so it needs at least 4")
    adapter = Adapter(ck.model)
    mine = answer_means(adapter, td, device, ignore=IGNORE)
    dirs = directions(mine, other_means(ck, ckpt_path, td, reference, contrast, device))[1:]  # direction l: block l
    choose, report = halves(td.n_records, seed)
    before = [bool(r["correct"]) for r in score_records(ck.model, td, device)]
    rows = sweep(adapter, td, dirs, choose, device)
    best = max(rows, key=lambda row: (row["choose"]["accuracy"], -row["layer"]))
    orthogonalize(adapter, dirs[best["layer"]][0].to(device))
    source = "reference" if reference is not None else "contrast"
    write_edited(ck, ckpt_path, out, lineage_entry("ablate", ck.sha256, f"data:{data}", seed, {}, layer=best["layer"],
                                                   direction=source), force)
    return {
        "checkpoint": str(ckpt_path), "data": str(data), "written": str(out),
        "direction": {"source": source, "other": str(reference if reference is not None else contrast)},
        "seed": seed, "choose_records": choose, "report_records": report,
        "layers": [{k: v for k, v in row.items() if k != "hits"} for row in rows],
        "layer": best["layer"], "hook": best["hook"],
        "before": {"choose": share(before, choose), "report": share(before, report)},
        "after": {"report": share(best["hits"], report), "all": share(best["hits"], list(range(td.n_records)))},
        "correct": best["hits"], "device": device,
    }
