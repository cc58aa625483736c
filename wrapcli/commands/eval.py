"""``wrapcli eval``: accuracy of a checkpoint on built-in tasks, with and without the
spurious feature, next to the majority baseline.

Report ``results``: ``{"checkpoint", "eval_seed", "n", "precision", "tasks": {component: {setting:
{accuracy, n, majority_baseline, per_answer: {answer: {n, accuracy}}}}}}`` where setting
is ``natural`` (grammar strings as they come), ``C_Te=0`` (spurious relation absent) or
``C_Te=1`` (present in every string); the C_Te settings exist for count and index tasks.
With ``--conjugate``, ``conjugate: {"mapping": {letter: letter}, "tasks": ...}`` holds the
same table for relabelled prompts (answers mapped back), on the same examples.
``precision`` is the resolved ``--precision``: bf16 (``auto`` on CUDA) is
faster, and may flip a prediction whose two best logits are within bf16 rounding
(0-0.35% of them on the CPU preset's checkpoints); fp32 for exact figures.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Optional

import typer

from wrapcli.commands._options import (
    Debug,
    Device,
    DeviceMap,
    Fields,
    Json,
    MaxMemory,
    Out,
    Precision,
    Quiet,
    Split,
    Template,
    refuse_given,
)

SUMMARY = "Accuracy on built-in tasks, or on your records for a Hugging Face directory."  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli eval pt.safetensors --task count:a --task count:b -o eval.json

  wrapcli eval ft.safetensors --task count:a --conjugate a:c,c:a

  wrapcli eval tuned/ --data capitals.jsonl --samples samples.jsonl   # a Hugging Face directory

  wrapcli eval tuned/ --data quiz.jsonl   # multiple choice: {"prompt", "choices": [...], "answer": 2}

  wrapcli eval unlearned/ --data forget.jsonl --shots 0,3,8 --shots-from other-facts.jsonl
      # the in-context attack: 3 and 8 solved records of other facts before each question
"""


def eval_(
    ctx: typer.Context,
    ckpt: Annotated[str, typer.Argument(help="A wrapcli .safetensors checkpoint or HF directory.")],
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Task(s) to evaluate; default: the checkpoint's own. Repeatable.")] = None,
    n: Annotated[int, typer.Option("--eval-size", help="Examples per evaluation set.")] = 1000,
    data: Annotated[Optional[str], typer.Option("--data", help="Prompt/answer JSONL (exact match) or multiple-choice JSONL (choice accuracy, length-normalised too, and chance) instead of built-in tasks; CKPT is an HF directory with a tokenizer.")] = None,
    samples: Annotated[Optional[str], typer.Option("--samples", help="With --data: write one JSONL line per record (prompt, expected, predicted, correct, loss; for multiple choice each choice's log-likelihood).")] = None,
    samples_format: Annotated[Literal["wrapcli", "lm-eval"], typer.Option("--samples-format", help="--samples as wrapcli's lines, or lm-eval (lm-evaluation-harness's own samples_*.jsonl lines: doc_id, doc, arguments, resps, acc/acc_norm, the hashes) to diff against an lm-eval run item by item.")] = "wrapcli",
    lm_eval_task: Annotated[Optional[str], typer.Option("--lm-eval-task", help="Score an lm-evaluation-harness task instead of --data: its records built by lm-eval itself (the lmeval extra), its templates byte for byte; multiple_choice and loglikelihood tasks; data files must be local.")] = None,
    include_path: Annotated[Optional[str], typer.Option("--include-path", help="With --lm-eval-task: a directory of local task YAMLs (lm-eval's --include_path).")] = None,
    shots: Annotated[Optional[str], typer.Option("--shots", help="With --data: also score with K in-context examples before each prompt, for each K of a comma-separated list (an attack: Lynch et al. 2024); needs --shots-from.")] = None,
    shots_from: Annotated[Optional[str], typer.Option("--shots-from", help="With --shots: prompt/answer (or multiple-choice) records to draw the demonstrations from, never the scored record itself; --seed orders the draw.")] = None,
    conjugate: Annotated[Optional[str], typer.Option("--conjugate", help="Also evaluate with this invertible relabelling of a, b, c, e.g. a:c,c:a (answers mapped back).")] = None,
    eval_seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the fixed evaluation sets (one default for every checkpoint, so all are scored on the same examples).")] = 0,
    fields: Fields = None,
    split: Split = None,
    template: Template = "raw",
    device: Device = "auto",
    device_map: DeviceMap = None,
    max_memory: MaxMemory = None,
    precision: Precision = "auto",
    out: Out = None,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Evaluate a checkpoint on built-in tasks (accuracy, majority baseline, per answer) or,
    for a Hugging Face directory, on prompt/answer records (--data)."""
    from wrapcli.terminal.console import errors_as_exit, stderr
    from wrapcli.terminal.tables import accuracy_table, attention_table
    from wrapcli.textdata.sources import reading

    with errors_as_exit(debug), reading(fields, split, template, include_path):
        from wrapcli.core.errors import UsageError
        from wrapcli.core.files import check_format, check_outputs, write_text
        from wrapcli.core.runtime import placement, resolve_device, resolve_precision
        from wrapcli.report import envelope as reports
        from wrapcli.runs import eval as run
        from wrapcli.tasks.conjugate import parse_mapping
        from wrapcli.textdata.shots import parse_shots

        if n < 1:
            raise UsageError(f"--eval-size must be >= 1, got {n}")
        check_outputs(out, samples, inputs=[ckpt, data, shots_from])
        check_format(out, "report", "-o")
        check_format(samples, "samples", "--samples")
        placed = placement(device_map, max_memory)
        data = _records_source(data, lm_eval_task, include_path, samples_format, shots, fields, template, task or conjugate)
        if data is not None:
            if task or conjugate:
                raise UsageError("--data evaluates user records; --task and --conjugate are for built-in tasks")
            refuse_given(ctx, ("n",) if shots else ("n", "eval_seed"), "to built-in tasks; --data scores every record")
            if (shots is None) != (shots_from is None):
                raise UsageError("--shots and --shots-from go together (how many in-context examples, and from where)")
            device = resolve_device(device)
            results, lines = run.eval_data(ckpt, data, device, resolve_precision(precision, device), placed,
                                           shots=parse_shots(shots) if shots else None, shots_from=shots_from,
                                           seed=eval_seed, samples_format=samples_format)
            from wrapcli.terminal.tables import describe_scores

            con = stderr(quiet)
            con.print(f"{ckpt} on {data}: {describe_scores(results['scores'])}")
            for row in results.get("shots", {}).get("per_k", []):
                con.print(f"  with {row['k']} in-context examples: {row['accuracy']:.1%} of {row['n']} "
                          f"[{row['ci95'][0]:.1%}, {row['ci95'][1]:.1%}]")
            if samples:
                write_text(samples, "".join(json.dumps(line) + "\n" for line in lines))
            reports.write(reports.envelope("eval", results, inputs=[ckpt, *([] if lm_eval_task else [data]),
                                                                   *([shots_from] if shots_from else [])],
                                           seed=eval_seed if shots else None, device=results["device"],
                                           precision=results["precision"]), out, json_out)
            return
        elif samples or shots or shots_from:
            given = [f for f, v in (("--samples", samples), ("--shots", shots), ("--shots-from", shots_from)) if v]
            raise UsageError(f"{', '.join(given)} {'go' if len(given) > 1 else 'goes'} with --data")
        mapping = parse_mapping(conjugate) if conjugate is not None else None
        device = resolve_device(device)
        results = run.evaluate(ckpt, tasks=task, n=n, seed=eval_seed, device=device,
                               precision=resolve_precision(precision, device), mapping=mapping, placement=placed)
        con = stderr(quiet)
        con.print(accuracy_table(results["tasks"], f"{ckpt}"))
        if results.get("conjugate"):
            con.print(accuracy_table(results["conjugate"]["tasks"], f"{ckpt}, conjugate prompts {conjugate}"))
        for setting in ("C_Te=0", "C_Te=1") if "attention" in results else ():
            con.print(attention_table(results["attention"][setting], f"attention from the answer position ({setting}), share"))
        report = reports.envelope("eval", results, inputs=[ckpt], seed=eval_seed, device=device,
                                  precision=results["precision"])
        reports.write(report, out, json_out)


def _records_source(data, lm_eval_task, include_path, samples_format, shots, fields, template, built_in):
    """The records eval scores: --data, or an lm-eval task (read as ``lm-eval:NAME``)."""
    from wrapcli.core.errors import UsageError
    from wrapcli.textdata.sources import LM_EVAL

    if lm_eval_task is None:
        if include_path is not None:
            raise UsageError("--include-path goes with --lm-eval-task")
        if samples_format != "wrapcli" and data is None:
            raise UsageError("--samples-format goes with --data or --lm-eval-task")
    elif data is not None:
        raise UsageError("give --data or --lm-eval-task, not both")
    elif built_in:
        raise UsageError(f"--lm-eval-task {lm_eval_task} scores an lm-eval task; --task and --conjugate are for "
                         "built-in tasks")
    elif fields or template != "raw":
        raise UsageError("--fields and --template shape record files; lm-eval renders its tasks with its own templates")
    if samples_format == "lm-eval" and shots:
        raise UsageError("--samples-format lm-eval writes one line per document; --shots writes wrapcli's lines")
    return data if lm_eval_task is None else LM_EVAL + lm_eval_task
