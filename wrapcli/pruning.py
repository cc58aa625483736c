"""Weight x gradient pruning (Jain et al. 2024, Algorithm 3; PROTOCOL.md "Pruning").

One forward/backward pass of the fine-tuned model on the task whose capability may be
wrapped (cross-entropy against its answers). A unit's score is the sum of weight x
gradient over the weights that read from it: zeroing those weights changes the loss by
about -score (first-order Taylor), so the score is the estimated loss DROP and the top-K
units are the ones whose removal should help the task most. If a handful of units
restore a capability the fine-tune appeared to remove, the wrapper is that small.
Units: MLP neurons and attention heads (wrapcli/adapters.py), or single weights of
those projections.
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


PRUNE_STREAM = 7  # training-stream id of the scoring batches: unseen by train/finetune
# User records are scored in micro-batches of at most this many (padded) tokens, gradients
# summed: the backward pass's activations of a 1B-parameter model take about 2 MB per
# token, so --batch-size bounds the statistics and this bounds the memory.
MAX_SCORING_TOKENS = 1024


def micro_batches(td, batches: list[list[int]]) -> list[list[int]]:
    """Split each batch of record indices into runs whose padded size (rows x longest
    record) stays within MAX_SCORING_TOKENS; a record longer than that is a run alone."""
    out = []
    for idx in batches:
        chunk, width = [], 0
        for i in idx:
            w = max(width, len(td.examples[i][0]))
            if chunk and (len(chunk) + 1) * w > MAX_SCORING_TOKENS:
                out.append(chunk)
                chunk, w = [], len(td.examples[i][0])
            chunk.append(i)
            width = w
        out.append(chunk)
    return out


def prune(*, ckpt_path, task=None, also=(), data=None, kind="neuron", ks=(0, 1, 2, 5, 10, 15, 20),
          iterative=False, batches=1, batch_size=512, eval_size=512, seed=0, device="cpu",
          write=None, write_k=None, on_k=None, precision="fp32") -> dict:
    """Score, sweep K, and optionally write the model pruned at ``write_k``. The saliency
    is always computed in fp32; ``precision`` (fp32 or bf16) applies to the evaluations."""
    from wrapcli import checkpoint
    from wrapcli.evaluation import EVAL_SEED, evaluate
    from wrapcli.checkpoint import lineage_entry
    from wrapcli.tasks.checks import task_for
    from wrapcli.tasks.sequences import batch_for_step
    from wrapcli.training import loss_on

    if batches < 1 or batch_size < 1:
        raise UsageError("--batches and --batch-size must be >= 1")
    if write and write_k is None:
        raise UsageError("-w needs --write-k (how many units to prune in the written checkpoint)")
    ck = checkpoint.load(ckpt_path, device=device)
    adapter = Adapter(ck.model)
    if data is not None:
        from wrapcli.userdata import score_text, text_data

        td = text_data(data, ckpt_path, ck.model, seed)
        if not td.identity.startswith("prompt:"):
            raise WrapError(f"{data}: pruning needs prompt/answer records, not text")
        import torch

        from wrapcli.userdata import IGNORE, answer_logits

        micro = micro_batches(td, [td.indices(i, batch_size) for i in range(batches)])
        scored = sum(sum(l != IGNORE for l in td.examples[i][1][1:]) for chunk in micro for i in chunk)
        scoring = [td.collate(chunk, device) for chunk in micro]

        def loss_fn(model, batch):  # this micro-batch's share of the mean over every scored token
            logits, target, _, _ = answer_logits(model, batch)
            return torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum") * len(scoring) / scored

        def evaluate_fn(model):
            return {"data": score_text(model, td, device)}

        target = f"data:{data}"
    else:
        if task is None:
            raise UsageError("give --task (built-in task) or --data (prompt/answer JSONL)")
        spec = task_for(ck, task).replace(seed=seed)
        specs = [spec] + [task_for(ck, t) for t in also]
        scoring = [batch_for_step(spec, i, batch_size, PRUNE_STREAM).tokens for i in range(batches)]
        import torch

        scoring = [torch.as_tensor(t, device=device) for t in scoring]

        def loss_fn(model, tokens):
            return loss_on(model, tokens, "answer")

        def evaluate_fn(model):
            out = {}
            for s in specs:
                out.update(evaluate(model, s.replace(seed=EVAL_SEED), eval_size, device, precision=precision))
            return out

        target = spec.name
    order, rows = sweep(adapter, list(ks) + ([write_k] if write_k else []), kind, scoring,
                        loss_fn, evaluate_fn, iterative, on_k)
    if write:
        for unit in order[:write_k]:
            zero(adapter, unit)
        entry = lineage_entry("prune", ck.sha256, target, seed, {}, unit=kind, k=write_k,
                              units=[u.to_dict() for u in order[:write_k]])
        if ck.path.is_dir():  # a Hugging Face model stays one, tokenizer included
            from wrapcli.userdata import load_tokenizer

            ck.lineage = [*ck.lineage, entry]
            tokenizer = load_tokenizer(ckpt_path) if data is not None else None
            checkpoint.export(ck, write, tokenizer=tokenizer)
        else:
            checkpoint.save(write, ck.model, vocab=ck.vocab, task=ck.task, lineage=[*ck.lineage, entry])
    return {
        "checkpoint": str(ckpt_path),
        "task": None if data is not None else target,
        "data": str(data) if data is not None else None,
        "also": list(also),
        "unit": kind,
        "iterative": iterative,
        "n_units": total_units(adapter, kind),
        "batches": batches,
        "batch_size": batch_size,
        "pruned": [u.to_dict() for u in order],
        "sweep": rows,
        "written": {"path": str(write), "k": write_k} if write else None,
        "precision": precision,
        "device": device,
    }
