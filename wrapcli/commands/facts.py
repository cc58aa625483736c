"""``wrapcli facts``: write a world of synthetic facts whose audit truth is known
(wrapcli/tasks/facts.py): the records of every step of an unlearning study and a
word-level tokenizer for training a small model on them from scratch."""

from __future__ import annotations

from typing import Annotated

import typer

from wrapcli.commands._options import Debug, Force, Quiet, Seed

SUMMARY = "Write a world of synthetic facts where an unlearning audit's answer is known."  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli facts world/ --seed 0
  wrapcli train --data world/pretrain.jsonl --tokenizer world/tokenizer --arch llama -o original/

  make -f examples/third-party.mk world   # the whole truth study: wrapped and never-knew models audited
"""


def facts(
    out: Annotated[str, typer.Argument(help="Directory to write (created; an earlier world there is replaced).")],
    seed: Seed = 0,
    retain: Annotated[int, typer.Option("--retain", help="Entities every model knows (G).")] = 120,
    relearn: Annotated[int, typer.Option("--relearn", help="Forgotten entities the relearning attack trains on (F_A).")] = 40,
    heldout: Annotated[int, typer.Option("--heldout", help="Forgotten entities scored while relearning (F_B).")] = 120,
    unseen: Annotated[int, typer.Option("--unseen", help="Entities in no training file, held out beside F_B so the floor can be estimated (N).")] = 120,
    values: Annotated[int, typer.Option("--values", help="Values per relation (many make a guess rarely right).")] = 100,
    choices: Annotated[int, typer.Option("--choices", help="Options per multiple-choice record.")] = 4,
    force: Force = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Write fictitious entities and their facts as prompt/answer, multiple-choice and probe
    records for an unlearning audit whose answer is known, with a tokenizer."""
    from wrapcli.terminal.console import errors_as_exit, stderr

    with errors_as_exit(debug):
        from wrapcli.runs.facts import write_world
        from wrapcli.tasks.facts import WorldSpec

        w = write_world(out, WorldSpec(seed, retain, relearn, heldout, unseen, values, choices), force=force)
        counts = ", ".join(f"{k} {n}" for k, n in w["files"].items())
        stderr(quiet).print(f"wrote {out}/: {counts} records; tokenizer/ ({w['vocab']} words)")
