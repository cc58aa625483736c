"""The wrapcli application: assembles the subcommands, nothing else. Heavy imports
(torch, transformers) happen inside command bodies so ``--help`` is instant."""

from __future__ import annotations

import typer

from wrapcli import __version__
from wrapcli.commands.eval import eval_
from wrapcli.commands.export import export
from wrapcli.commands.train import train

app = typer.Typer(
    name="wrapcli",
    help=(
        "Is a capability removed by fine-tuning really gone, or only wrapped? "
        "Each subcommand reads .safetensors checkpoints and writes a checkpoint or a JSON report.\n\n"
        "Example: wrapcli train --task count --prior a=0.9,b=0.1 -o pt.safetensors && "
        "wrapcli eval pt.safetensors --task count:a --task count:b"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"wrapcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


app.command("train")(train)
app.command("eval")(eval_)
app.command("export")(export)
