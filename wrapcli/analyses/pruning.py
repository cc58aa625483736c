"""Weight x gradient pruning (Jain et al. 2024, Algorithm 3; docs/protocol.md "Pruning").

One forward/backward pass of the fine-tuned model on the task whose capability may be
wrapped (cross-entropy against its answers). A unit's score is the sum of weight x
gradient over the weights that read from it: zeroing those weights changes the loss by
about -score (first-order Taylor), so the score is the estimated loss DROP and the top-K
units are the ones whose removal should help the task most. If a handful of units
restore a capability the fine-tune appeared to remove, the wrapper is that small.
Units (wrapcli/models/adapters.py): MLP neurons and attention heads (scored over the output
projection weights that read them), single weights of those projections, or the paper's
own unit, a *row*: one output feature of any linear map in the blocks (attention
query/key/value/output and both MLP matrices), scored over the weights that write it.
A selected unit is zeroed, or with ``revert`` reset to a base model's values, which
localises a fine-tune's change rather than ablating the model. Running a sweep over a
checkpoint (scoring data, the written model, the report) is wrapcli/runs/prune.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from wrapcli.core.errors import UsageError, WrapError
from wrapcli.models.adapters import Adapter

KINDS = ("neuron", "head", "weight", "row")
PROJECTIONS = ("neuron", "head")  # weight units live in both output projections


@dataclass(frozen=True)
class Unit:
    layer: int
    kind: str  # neuron | head | weight:neuron | weight:head (weight of that projection) | row:MODULE
    index: int  # unit index, flat index into the projection weight for weights, output feature for rows
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def scored_weights(adapter: Adapter, kind: str) -> dict[str, object]:
    """The weights a unit of ``kind`` can touch, by parameter name: the two output
    projections, or for rows every linear map of every block."""
    if kind == "row":
        return {adapter.param_name(l, n): m.weight for l in range(adapter.n_layers) for n, m, _ in adapter.linears(l)}
    return {adapter.param_name(l, adapter.layout.mlp_out if k == "neuron" else adapter.layout.attn_out):
            adapter.projection(l, k).weight for l in range(adapter.n_layers) for k in PROJECTIONS}


def compute_scores(adapter: Adapter, batches, loss_fn, kind: str) -> list[Unit]:
    """Every unit of ``kind`` with its weight x gradient score, highest first."""
    import torch

    model = adapter.model
    model.eval()  # scores must not depend on dropout masks
    model.zero_grad(set_to_none=True)
    # only the scored weights' gradients are needed: no memory for the others'
    wanted = {id(w) for w in scored_weights(adapter, kind).values()}
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
        if kind == "row":
            for name, module, out_axis in adapter.linears(layer):
                w = module.weight
                if w.grad is None:
                    raise WrapError(f"no gradient reached layer {layer}'s {name}")
                scores = (w.detach() * w.grad).float().sum(1 - out_axis)  # (out_features,)
                units += [Unit(layer, f"row:{name}", i, float(s)) for i, s in enumerate(scores)]
            continue
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


def zero(adapter: Adapter, unit: Unit, source: dict | None = None) -> None:
    """Zero a unit's weights; with ``source`` (a base model's weights by parameter name,
    e.g. ``scored_weights`` of its adapter), reset them to the base's values instead."""
    import torch

    name, index = adapter.location(unit)
    w = dict(adapter.model.named_parameters())[name]
    with torch.no_grad():
        w[index] = 0 if source is None else source[name][index].to(w.device, w.dtype)


def total_units(adapter: Adapter, kind: str) -> int:
    if kind == "weight":
        return sum(adapter.projection(l, k).weight.numel() for l in range(adapter.n_layers) for k in PROJECTIONS)
    if kind == "row":
        return sum(m.weight.shape[axis] for l in range(adapter.n_layers) for _, m, axis in adapter.linears(l))
    return adapter.n_layers * adapter.n_units(kind)


def sweep(adapter: Adapter, ks: list[int], kind: str, batches, loss_fn, evaluate_fn,
          iterative: bool = False, on_k=None, source: dict | None = None) -> tuple[list[Unit], list[dict]]:
    """Prune the top-K units for every K in ``ks`` and evaluate each pruned model.

    One ranking serves all K unless ``iterative``, which re-scores after every removal.
    With ``source`` (a base model's weights by name) the units are reverted to the base
    instead of zeroed. The model's weights are restored afterwards. Returns (pruned units
    in order, ``[{"k", "results"}]``)."""
    if kind not in KINDS:
        raise UsageError(f"unknown unit {kind!r} (known: {', '.join(KINDS)})")
    ks = sorted(set(ks))
    if not ks or ks[0] < 0:
        raise UsageError(f"K values must be >= 0, got {ks}")
    available = total_units(adapter, kind)
    if ks[-1] > available:
        raise UsageError(f"--k: K={ks[-1]} is more than the {available} {kind} units this model has")
    saved = {n: w.detach().clone() for n, w in scored_weights(adapter, kind).items()}
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
                zero(adapter, best, source)
            return order, rows
        order = compute_scores(adapter, batches, loss_fn, kind)[: ks[-1]]
        rows = []
        for k in ks:
            _restore(adapter, saved)
            for unit in order[:k]:
                zero(adapter, unit, source)
            rows.append({"k": k, "results": evaluate_fn(adapter.model)})
            on_k and on_k(k)
        return order, rows
    finally:
        _restore(adapter, saved)


def _restore(adapter: Adapter, saved: dict) -> None:
    import torch

    params = dict(adapter.model.named_parameters())
    with torch.no_grad():
        for name, w in saved.items():
            params[name].copy_(w)
