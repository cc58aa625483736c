"""``wrapcli export``: write a checkpoint as a Hugging Face model directory."""

from __future__ import annotations

from typing import Annotated

import typer

from wrapcli.commands._options import Debug, Force, Quiet

SUMMARY = "Export a checkpoint to a directory that transformers opens."  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli export pt.safetensors pt_hf/
  python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('pt_hf')"
"""


def export(
    ckpt: Annotated[str, typer.Argument(help="A wrapcli .safetensors checkpoint.")],
    dest: Annotated[str, typer.Argument(help="Directory to create (replaced atomically if it exists).")],
    force: Force = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Export to a directory that AutoModelForCausalLM.from_pretrained opens; wrapcli's
    vocabulary, task and lineage go beside the weights in wrapcli.json."""
    from wrapcli.terminal.console import errors_as_exit, stderr

    with errors_as_exit(debug):
        from wrapcli.core.files import check_distinct
        from wrapcli.runs.export import export as run

        check_distinct([dest], [ckpt])
        run(ckpt, dest, force=force)
        stderr(quiet).print(f"wrote {dest}/")


