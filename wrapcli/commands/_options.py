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
