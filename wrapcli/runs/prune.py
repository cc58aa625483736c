"""`wrapcli prune`: load the checkpoint, build the scoring batches (built-in task or
prompt/answer records), run the sweep (wrapcli/analyses/pruning.py), write the pruned model and
assemble the report's results (schema PRUNE)."""

from __future__ import annotations

from wrapcli.analyses.pruning import sweep, total_units, zero
from wrapcli.core.errors import UsageError
from wrapcli.models.adapters import Adapter
from wrapcli.models.lineage import check_not_itself, check_same_shapes, lineage_entry
from wrapcli.runs.results import prune_result

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


def prune_compiled(ckpt_path, task, also, ks, n, eval_n, seed, unit, revert_to, refused: bool) -> dict:
    """A compiled (Tracr) counter pruned by single weights or MLP neurons, after the options
    it cannot take are refused."""
    from wrapcli.models import checkpoint
    from wrapcli.runs import compiled as compiled_runs

    if unit in ("head", "row") or refused:
        raise UsageError("a compiled (Tracr) model is pruned by single weights or MLP neurons (--unit "
                         "weight or neuron), without --data, -w, --iterative or --spurious")
    if revert_to is not None and not checkpoint.is_compiled(revert_to):
        raise UsageError(f"--revert-to {revert_to}: a compiled model reverts to another compiled model")
    if revert_to is not None:
        check_not_itself(ckpt_path, revert_to, "--revert-to")
    if task is None:
        raise UsageError("give --task count:X for a compiled counter")
    return compiled_runs.prune(ckpt_path=ckpt_path, task=task, also=also, ks=ks, n=n, eval_n=eval_n, seed=seed,
                               unit=unit, revert_to=revert_to)


def prune(*, ckpt_path, task=None, also=(), data=None, kind=None, ks=(0, 1, 2, 5, 10, 15, 20),
          iterative=False, batches=1, batch_size=512, eval_size=512, seed=0, device="cpu",
          write=None, write_k=None, on_k=None, precision="fp32", revert_to=None, spurious=0.0,
          force=False) -> dict:
    """Score, sweep K, and optionally write the model pruned at ``write_k``. The saliency
    is always computed in fp32; ``precision`` (fp32 or bf16) applies to the evaluations.
    With ``revert_to`` (the base model, same shapes) the selected units are reset to the
    base's values instead of zeroed: the fine-tune's change is undone there alone.
    ``spurious`` is the share of scoring strings (built-in tasks) that carry the spurious
    relation: 0 scores on C_Te = 0 inputs, 1 on C_Te = 1 inputs. ``kind`` None is the
    paper's unit, a row (one output feature of a linear map)."""
    from wrapcli.models import checkpoint

    if checkpoint.is_compiled(ckpt_path):
        return prune_compiled(ckpt_path, task, also, ks, batch_size, eval_size, seed, kind, revert_to,
                              refused=bool(data or write or iterative or spurious))
    kind = kind or "row"
    check_prune_args(batches, batch_size, spurious, data, write, write_k)
    if revert_to is not None:
        check_not_itself(ckpt_path, revert_to, "--revert-to")
    ck = checkpoint.load(ckpt_path, device=device)
    adapter = Adapter(ck.model)
    source, reverted = revert_source(ck, ckpt_path, revert_to, kind, device)
    if data is not None:
        target, scoring, loss_fn, evaluate_fn = text_scoring(ck, ckpt_path, data, seed, batches, batch_size, device)
    else:
        target, scoring, loss_fn, evaluate_fn = task_scoring(ck, task, also, seed, spurious, batches, batch_size,
                                                             eval_size, device, precision)
    order, rows = sweep(adapter, list(ks) + ([write_k] if write_k else []), kind, scoring,
                        loss_fn, evaluate_fn, iterative, on_k, source)
    if write:
        write_pruned(ck, adapter, order[:write_k], write, target=target, seed=seed, kind=kind, source=source,
                     reverted=reverted, tokenizer_from=ckpt_path if data is not None else None, force=force)
    return prune_result(ckpt_path, task=None if data is not None else target, data=data, also=also, kind=kind,
                        iterative=iterative, n_units=total_units(adapter, kind), batches=batches,
                        batch_size=batch_size, pruned=[u.to_dict() for u in order], sweep=rows,
                        written={"path": str(write), "k": write_k} if write else None, precision=precision,
                        device=device, reverted=reverted, scoring_spurious=spurious if data is None else None)


def check_prune_args(batches, batch_size, spurious, data, write, write_k) -> None:
    if batches < 1 or batch_size < 1:
        raise UsageError("--batches and --batch-size must be >= 1")
    if not 0 <= spurious <= 1:
        raise UsageError(f"--spurious must be in [0, 1], got {spurious}")
    if spurious and data is not None:
        raise UsageError("--spurious applies to built-in tasks, not to --data")
    if write and write_k is None:
        raise UsageError("-w needs --write-k (how many units to prune in the written checkpoint)")


def revert_source(ck, ckpt_path, revert_to, kind, device) -> tuple[dict | None, dict | None]:
    """The base's values of every scored weight (what a reverted unit is reset to) and the
    base's path and hash for the report; (None, None) without ``revert_to``."""
    if revert_to is None:
        return None, None
    from wrapcli.analyses.pruning import scored_weights
    from wrapcli.models import checkpoint

    base = checkpoint.load(revert_to, device=device)
    check_same_shapes(ck, base, str(ckpt_path), f"--revert-to {revert_to}")
    source = {n: w.detach() for n, w in scored_weights(Adapter(base.model), kind).items()}
    return source, {"path": str(revert_to), "sha256": base.sha256}


def text_scoring(ck, ckpt_path, data, seed, batches, batch_size, device):
    """The user's records: saliency from the loss on the answers (the correct choices),
    in micro-batches; the sweep scores the record kind's metric (exact match, or choice
    accuracy). Returns (target, scoring batches, loss_fn, evaluate_fn)."""
    import torch

    from wrapcli.textdata.textscore import score_text
    from wrapcli.textdata.userdata import IGNORE, answer_logits, text_data

    td = text_data(data, ckpt_path, ck.model, seed, kinds=("prompt", "choice"))
    micro = micro_batches(td, [td.indices(i, batch_size) for i in range(batches)])
    scored = sum(sum(l != IGNORE for l in td.examples[i][1][1:]) for chunk in micro for i in chunk)
    scoring = [td.collate(chunk, device) for chunk in micro]

    def loss_fn(model, batch):  # this micro-batch's share of the mean over every scored token
        logits, target, _, _ = answer_logits(model, batch)
        return torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum") * len(scoring) / scored

    def evaluate_fn(model):
        return {"data": score_text(model, td, device)}

    return f"data:{data}", scoring, loss_fn, evaluate_fn


def task_scoring(ck, task, also, seed, spurious, batches, batch_size, eval_size, device, precision):
    """A built-in task: saliency from the answer loss on ``batches`` fresh batches (with
    ``spurious`` of them carrying the spurious relation); the sweep evaluates the task and
    ``also``. Returns (target, scoring batches, loss_fn, evaluate_fn)."""
    import torch

    from wrapcli.core.runtime import check_batch_memory
    from wrapcli.tasks.checks import task_for
    from wrapcli.tasks.evaluation import EVAL_SEED, check_eval_memory, evaluate
    from wrapcli.tasks.sequences import batch_for_step, seq_len
    from wrapcli.training.batches import loss_on

    if task is None:
        raise UsageError("give --task (built-in task) or --data (prompt/answer JSONL)")
    spec = task_for(ck, task).replace(seed=seed)
    specs = [spec] + [task_for(ck, t) for t in also]
    check_batch_memory("--batch-size", batch_size, ck.config, seq_len(spec.text_len))
    for s in specs:
        check_eval_memory("--eval-size", eval_size, s)
    scoring_spec = spec.replace(spurious=spurious)
    scoring = [torch.as_tensor(batch_for_step(scoring_spec, i, batch_size, PRUNE_STREAM).tokens, device=device)
               for i in range(batches)]

    def loss_fn(model, tokens):
        return loss_on(model, tokens, "answer")

    def evaluate_fn(model):
        out = {}
        for s in specs:
            out.update(evaluate(model, s.replace(seed=EVAL_SEED), eval_size, device, precision=precision))
        return out

    return spec.name, scoring, loss_fn, evaluate_fn


def write_pruned(ck, adapter, units, path, *, target, seed, kind, source, reverted, tokenizer_from, force) -> None:
    """Zero (or revert) ``units`` in the loaded model and write it with its lineage entry: a
    Hugging Face model stays one, tokenizer included (read from ``tokenizer_from``)."""
    from wrapcli.models import checkpoint

    for unit in units:
        zero(adapter, unit, source)
    entry = lineage_entry("prune", ck.sha256, target, seed, {}, unit=kind, k=len(units),
                                     units=[u.to_dict() for u in units],
                                     operation="revert" if reverted else "zero", revert_to=reverted)
    if ck.path.is_dir():
        from wrapcli.textdata.userdata import load_tokenizer

        ck.lineage = [*ck.lineage, entry]
        tokenizer = load_tokenizer(tokenizer_from) if tokenizer_from is not None else None
        checkpoint.export(ck, path, tokenizer=tokenizer, force=force)
    else:
        checkpoint.save(path, ck.model, vocab=ck.vocab, task=ck.task, lineage=[*ck.lineage, entry])
