"""Option types shared by several subcommands, so flags mean the same everywhere."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Out = Annotated[Optional[str], typer.Option("-o", "--out", help="Write the artefact here ('-' = stdout).")]
Json = Annotated[bool, typer.Option("--json", help="Print the JSON report to stdout.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No tables or progress on stderr.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show a traceback on errors.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for data and initialisation.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16.")]


def resolve_device(name: str) -> str:
    import torch

    from wrapcli.errors import WrapError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WrapError(f"device {name!r} requested but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise WrapError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)")
    return name


def check_dtype(name: str) -> str:
    from wrapcli.errors import WrapError

    if name not in ("float32", "bfloat16", "float16"):
        raise WrapError(f"unknown dtype {name!r} (float32, bfloat16, float16)")
    return name
