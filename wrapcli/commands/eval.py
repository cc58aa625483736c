"""``wrapcli eval``: accuracy of a checkpoint on built-in tasks, with and without the
spurious feature, next to the majority baseline.

Report ``results``: ``{"checkpoint", "eval_seed", "n", "tasks": {component: {setting:
{accuracy, n, majority_baseline, per_answer: {answer: {n, accuracy}}}}}}`` where setting
is ``natural`` (grammar strings as they come), ``C_Te=0`` (spurious relation absent) or
``C_Te=1`` (present in every string); the C_Te settings exist for count and index tasks.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from wrapcli.commands._options import Debug, Device, Json, Out, Quiet

EXAMPLE = """Example:

  wrapcli eval pt.safetensors --task count:a --task count:b -o eval.json
"""


def eval_(
    ckpt: Annotated[str, typer.Argument(help="A wrapcli .safetensors checkpoint or HF directory.")],
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Task(s) to evaluate; default: the checkpoint's own. Repeatable.")] = None,
    n: Annotated[int, typer.Option("--n", help="Examples per evaluation set.")] = 1000,
    eval_seed: Annotated[int, typer.Option("--seed", help="Seed of the fixed evaluation sets (same default for every checkpoint, so they are compared on the same data).")] = 0,
    device: Device = "auto",
    out: Out = None,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Evaluate a checkpoint on built-in tasks (accuracy, majority baseline, per answer)."""
    from wrapcli.console import accuracy_table, errors_as_exit, stderr

    with errors_as_exit(debug):
        from wrapcli import checkpoint, reports
        from wrapcli.commands._options import resolve_device
        from wrapcli.errors import WrapError
        from wrapcli.evaluation import evaluate
        from wrapcli.files import check_writable
        from wrapcli.tasks.checks import task_for

        if n < 1:
            raise WrapError(f"--n must be >= 1, got {n}")
        if out and out != "-":
            check_writable(out)
        device = resolve_device(device)
        ck = checkpoint.load(ckpt, device=device)
        results = {}
        for t in task or [None]:
            spec = task_for(ck, t).replace(seed=eval_seed)
            results.update(evaluate(ck.model, spec, n, device))
        stderr(quiet).print(accuracy_table(results, f"{ckpt}"))
        report = reports.envelope(
            "eval", {"checkpoint": str(ckpt), "eval_seed": eval_seed, "n": n, "tasks": results},
            inputs=[ckpt], seed=eval_seed, device=device,
        )
        reports.write(report, out, json_out)


