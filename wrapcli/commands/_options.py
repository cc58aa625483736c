"""Option types shared by several subcommands, so flags mean the same everywhere."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

Out = Annotated[Optional[str], typer.Option("-o", "--out", help="Write the artefact here ('-' = stdout).")]
Json = Annotated[bool, typer.Option("--json", help="Print the JSON report to stdout.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No tables or progress on stderr.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show a traceback on errors.")]
Force = Annotated[bool, typer.Option("--force", help="Replace an output directory that wrapcli did not write (never one that holds an input or the current directory).")]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Seed for data and initialisation (>= 0).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
# Big-model dispatch (accelerate) for the inference commands on Hugging Face directories
DeviceMap = Annotated[Optional[Literal["auto", "balanced", "sequential"]], typer.Option("--device-map", help="Hugging Face directories: spread the layers over the GPUs, the CPU and disk (accelerate's big-model dispatch, the big extra): auto, balanced or sequential.")]
MaxMemory = Annotated[Optional[str], typer.Option("--max-memory", help="With --device-map: memory per device, e.g. 0=20GiB,cpu=64GiB (what does not fit goes to disk).")]
Preset = Annotated[Literal["cpu", "demo", "paper", "smoke"], typer.Option("--preset", help="cpu (default), demo, paper or smoke (docs/presets.md).")]

# Training runs (train, finetune, revive): "(default: preset)" means the preset gives it.
Steps = Annotated[Optional[int], typer.Option("--steps", min=1, help="Optimizer steps (default: preset).")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Batch size (default: preset).")]
Loss = Annotated[Optional[Literal["full", "answer"]], typer.Option("--loss", help="full (next-token) or answer (default: preset).")]
EvalEvery = Annotated[Optional[int], typer.Option("--eval-every", min=1, help="Steps between evaluations (default: preset; fine-tuning: steps / 10).")]
EvalSize = Annotated[Optional[int], typer.Option("--eval-size", min=1, help="Examples per evaluation (default: preset).")]
Log = Annotated[Optional[str], typer.Option("--log", "--log-file", help="Write the JSON run report here (--log-file under torchrun, whose own parser takes --log).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from OUT.state if it exists.")]
SaveEvery = Annotated[Optional[int], typer.Option("--save-every", min=1, help="Steps between resumable states (default: every 60 s).")]
# One --precision vocabulary (wrapcli/core/runtime.py PRECISIONS); the help says what each command does with it.
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
Precision = Annotated[PrecisionName, typer.Option("--precision", help="auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16 autocast (faster on AMX CPUs, other numbers); fp16 is refused here.")]

# Record files as the field ships them (wrapcli/textdata/sources.py): every command that reads records takes these.
Fields = Annotated[Optional[str], typer.Option("--fields", help="Map a record file's columns to record keys: KEY=COLUMN,... with keys prompt, answer, choices, text, label, group, subject; choices=A+B+C+D gathers columns (e.g. prompt=question,choices=choices,answer=answer).")]
Split = Annotated[Optional[str], typer.Option("--split", help="The split to read where a record file or dataset directory holds several (e.g. test).")]
Template = Annotated[Literal["raw", "cloze", "letters"], typer.Option("--template", help="Multiple-choice records: raw (each choice appended to the prompt as written), cloze (each after a space, lm-eval's default delimiter) or letters (lm-eval's MMLU/WMDP rendering: 'A. ...' lines, 'Answer:', continuations ' A', ' B', ...).")]


def refuse_given(ctx: typer.Context, params: tuple[str, ...], why: str) -> None:
    """A usage error naming the options among ``params`` (parameter names) that the user
    typed (or set through the environment) although they do not apply: ``why`` says so,
    e.g. "to built-in tasks, not to --data". An option left at its default passes."""
    from wrapcli.core.errors import UsageError

    flags = {p.name: p.opts[0] for p in ctx.command.params}
    sources = {name: getattr(ctx.get_parameter_source(name), "name", None) for name in params}
    given = [flags[name] for name in params if sources[name] in ("COMMANDLINE", "ENVIRONMENT")]
    if given:
        raise UsageError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} {why}")
