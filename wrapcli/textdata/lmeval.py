"""lm-evaluation-harness tasks as wrapcli records, built by lm-eval itself (the ``lmeval``
extra): its TaskManager finds the task (with ``--include-path`` for local task YAMLs), its
own templates render each document, and its ``construct_requests`` gives the (context,
continuation) pairs, so the prompts and continuations are lm-eval's byte for byte.

- ``multiple_choice`` tasks become multiple-choice records: the context as the prompt, the
  continuations (target delimiter included) as the choices, the gold index as the answer
  and the choice texts' lengths as ``choice_lengths`` (lm-eval's acc_norm divides by them);
- ``loglikelihood`` tasks become prompt/answer records (exact match is lm-eval's ``acc``,
  its ``is_greedy``);
- any other output type is refused in one line.

Data files must be local (nothing is downloaded: Hugging Face's offline mode is forced).
Each record keeps ``lm_eval`` = {task, doc_id, doc, target} for the samples lm-eval's
tooling reads (wrapcli/textdata/samples.py).
"""

from __future__ import annotations

import os

from wrapcli.core.errors import UsageError, WrapError

EXTRA = "lmeval"
OUTPUT_TYPES = ("multiple_choice", "loglikelihood")
FEWSHOT_SEED = 1234  # lm-eval's simple_evaluate default


def require_lm_eval():
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import lm_eval.tasks
    except ImportError:
        raise WrapError(f"--lm-eval-task needs lm-evaluation-harness, the '{EXTRA}' extra: "
                        f"pip install 'wrapcli[{EXTRA}]'") from None
    return lm_eval.tasks


def load_task(name: str, include_path: str | None):
    """The one lm-eval task called ``name`` (a group is refused: give one of its tasks)."""
    tasks = require_lm_eval()
    import logging

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    manager = tasks.TaskManager(include_path=include_path, verbosity="ERROR")
    if name not in manager.all_tasks:
        near = sorted(t for t in manager.all_tasks if name.split("_")[0] in t)[:5]
        raise UsageError(f"--lm-eval-task {name}: no such task" + (f" (near: {', '.join(near)})" if near else "")
                         + ("" if include_path else "; local task YAMLs need --include-path DIR"))
    try:
        found = tasks.get_task_dict([name], manager)
    except Exception as e:  # the dataset's own loader: a missing local file, a hub name while offline
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise WrapError(f"--lm-eval-task {name}: lm-eval could not build the task ({first}); its data files "
                        "must be local") from None
    leaves = list(_leaves(found))
    if len(leaves) != 1:
        raise UsageError(f"--lm-eval-task {name}: a group of {len(leaves)} tasks; give one of them")
    task = leaves[0]
    if task.OUTPUT_TYPE not in OUTPUT_TYPES:
        raise UsageError(f"--lm-eval-task {name}: output type {task.OUTPUT_TYPE}; wrapcli scores "
                         f"{' and '.join(OUTPUT_TYPES)} tasks")
    return task


def _leaves(tree):
    for value in tree.values():
        if isinstance(value, dict):
            yield from _leaves(value)
        else:
            yield value


_built: dict[tuple, list[dict]] = {}


def task_records(name: str, include_path: str | None = None) -> list[dict]:
    """The task's evaluation documents as wrapcli records, in lm-eval's order (built once
    per process: each caller gets its own copy)."""
    import copy

    key = (name, include_path)
    if key not in _built:
        _built[key] = _build(name, include_path)
    return copy.deepcopy(_built[key])


def _build(name: str, include_path: str | None) -> list[dict]:
    task = load_task(name, include_path)
    if hasattr(task, "set_fewshot_seed"):
        task.set_fewshot_seed(seed=FEWSHOT_SEED)
    shots = task.config.num_fewshot or 0
    records = []
    for doc_id, doc in enumerate(task.eval_docs):
        ctx = task.fewshot_context(doc, shots)
        target = task.doc_to_target(doc)
        meta = {"task": name, "doc_id": doc_id, "doc": doc, "target": target}
        if task.OUTPUT_TYPE == "loglikelihood":
            context, continuation = task.construct_requests(doc, ctx).args[:2]
            records.append({"prompt": context, "answer": continuation, "lm_eval": meta})
            continue
        requests = task.construct_requests(doc, ctx)
        choices = task.doc_to_choice(doc)
        gold = choices.index(target) if isinstance(target, str) else target
        if isinstance(gold, list) or not 0 <= gold < len(choices):
            raise WrapError(f"--lm-eval-task {name}: document {doc_id} has gold {target!r}; wrapcli scores one gold "
                            "choice per document")
        records.append({"prompt": requests[0].args[0], "choices": [r.args[1] for r in requests], "answer": gold,
                        "choice_lengths": [max(len(c), 1) for c in choices], "lm_eval": meta})
    if not records:
        raise WrapError(f"--lm-eval-task {name}: no evaluation documents")
    return records
