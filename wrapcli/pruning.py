"""Weight x gradient pruning (Jain et al. 2024, Algorithm 3; PROTOCOL.md "Pruning").

One forward/backward pass of the fine-tuned model on the task whose capability may be
wrapped (cross-entropy against its answers). A unit's score is the sum of weight x
gradient over the weights that read from it: zeroing those weights changes the loss by
about -score (first-order Taylor), so the score is the estimated loss DROP and the top-K
units are the ones whose removal should help the task most. If a handful of units
restore a capability the fine-tune appeared to remove, the wrapper is that small.
Units: MLP neurons and attention heads (wrapcli/adapters.py), or single weights of
those projections. Running a sweep over a checkpoint (scoring data, the written model,
the report) is wrapcli/runs/prune.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from wrapcli.adapters import Adapter
from wrapcli.errors import UsageError, WrapError

KINDS = ("neuron", "head", "weight")
PROJECTIONS = ("neuron", "head")  # weight units live in both output projections


@dataclass(frozen=True)
class Unit:
    layer: int
    kind: str  # neuron | head | weight:neuron | weight:head (weight of that projection)
    index: int  # unit index, or flat index into the projection weight for weights
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def compute_scores(adapter: Adapter, batches, loss_fn, kind: str) -> list[Unit]:
    """Every unit of ``kind`` with its weight x gradient score, highest first."""
    import torch

    model = adapter.model
    model.eval()  # scores must not depend on dropout masks
    model.zero_grad(set_to_none=True)
    # only the output projections' gradients are needed: no memory for the others'
    wanted = {id(adapter.projection(l, k).weight) for l in range(adapter.n_layers) for k in PROJECTIONS}
    frozen = [p for p in model.parameters() if id(p) not in wanted and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for batch in batches:
            (loss_fn(model, batch) / len(batches)).backward()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    units = []
    for layer in range(adapter.n_layers):
        for proj_kind in PROJECTIONS:
            w = adapter.projection(layer, proj_kind).weight
            if w.grad is None:
                raise WrapError(f"no gradient reached layer {layer}'s {proj_kind} projection")
            prod = (w.detach() * w.grad).float()
            if kind == "weight":
                flat = prod.flatten()
                top = torch.topk(flat, min(len(flat), 4096))  # more than any sweep needs
                units += [Unit(layer, f"weight:{proj_kind}", int(i), float(s))
                          for s, i in zip(top.values, top.indices)]
            elif kind == proj_kind:
                scores = adapter.per_unit(prod, kind)
                units += [Unit(layer, kind, i, float(s)) for i, s in enumerate(scores)]
    model.zero_grad(set_to_none=True)
    return sorted(units, key=lambda u: -u.score)


def zero(adapter: Adapter, unit: Unit) -> None:
    import torch

    if unit.kind.startswith("weight:"):
        w = adapter.projection(unit.layer, unit.kind.split(":")[1]).weight
        with torch.no_grad():
            w.view(-1)[unit.index] = 0
    else:
        adapter.zero_unit(unit.layer, unit.kind, unit.index)


def total_units(adapter: Adapter, kind: str) -> int:
    if kind == "weight":
        return sum(adapter.projection(l, k).weight.numel() for l in range(adapter.n_layers) for k in PROJECTIONS)
    return adapter.n_layers * adapter.n_units(kind)


def sweep(adapter: Adapter, ks: list[int], kind: str, batches, loss_fn, evaluate_fn,
          iterative: bool = False, on_k=None) -> tuple[list[Unit], list[dict]]:
    """Prune the top-K units for every K in ``ks`` and evaluate each pruned model.

    One ranking serves all K unless ``iterative``, which re-scores after every removal.
    The model's weights are restored afterwards. Returns (pruned units in order,
    ``[{"k", "results"}]``)."""
    if kind not in KINDS:
        raise UsageError(f"unknown unit {kind!r} (known: {', '.join(KINDS)})")
    ks = sorted(set(ks))
    if not ks or ks[0] < 0:
        raise UsageError(f"K values must be >= 0, got {ks}")
    available = total_units(adapter, kind)
    if ks[-1] > available:
        raise UsageError(f"--k: K={ks[-1]} is more than the {available} {kind} units this model has")
    saved = _projections(adapter)
    try:
        if iterative:
            order: list[Unit] = []
            rows = []
            for k in range(ks[-1] + 1):
                if k in ks:
                    rows.append({"k": k, "results": evaluate_fn(adapter.model)})
                    on_k and on_k(k)
                if k == ks[-1]:
                    break
                taken = {(u.layer, u.kind, u.index) for u in order}
                best = next(u for u in compute_scores(adapter, batches, loss_fn, kind)
                            if (u.layer, u.kind, u.index) not in taken)
                order.append(best)
                zero(adapter, best)
            return order, rows
        order = compute_scores(adapter, batches, loss_fn, kind)[: ks[-1]]
        rows = []
        for k in ks:
            _restore(adapter, saved)
            for unit in order[:k]:
                zero(adapter, unit)
            rows.append({"k": k, "results": evaluate_fn(adapter.model)})
            on_k and on_k(k)
        return order, rows
    finally:
        _restore(adapter, saved)


def _projections(adapter: Adapter) -> dict:
    return {(l, k): adapter.projection(l, k).weight.detach().clone()
            for l in range(adapter.n_layers) for k in PROJECTIONS}


def _restore(adapter: Adapter, saved: dict) -> None:
    import torch

    with torch.no_grad():
        for (l, k), w in saved.items():
            adapter.projection(l, k).weight.copy_(w)


