"""``wrapcli ablate``: the directional-ablation attack (Arditi et al. 2024; Łucki et al.
2024): project out of the residual stream the direction that fine-tuning added at the
answer position, the source block chosen on half the records and its effect reported on
the other half, and write the model with that direction projected out of its weights, an
ordinary checkpoint that eval, compare and the rest read.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from wrapcli.commands._options import Debug, Device, Fields, Force, Json, Log, Quiet, Seed, Split, Template

SUMMARY = "Project out the direction fine-tuning added: does the capability come back?"  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli ablate unlearned/ --data forget.jsonl --reference original/ -o unlearned-ablated/ --log ablate.json

  wrapcli ablate unlearned/ --data forget.jsonl --contrast retain.jsonl -o unlearned-ablated/
      # no reference: the forget records' mean minus the retain records' mean on the unlearned model
"""


def ablate(
    ckpt: Annotated[str, typer.Argument(help="The fine-tuned checkpoint (.safetensors or a Hugging Face directory).")],
    data: Annotated[str, typer.Option("--data", help="Prompt/answer or multiple-choice JSONL: where the direction is read (each record's last prompt position) and what is scored.")],
    out: Annotated[str, typer.Option("-o", "--out", help="Where to write the ablated model (a directory for a directory, .safetensors for .safetensors).")],
    reference: Annotated[Optional[str], typer.Option("--reference", help="The model before fine-tuning: the direction is the fine-tune's mean minus its mean.")] = None,
    contrast: Annotated[Optional[str], typer.Option("--contrast", help="Without --reference: records whose mean (on the fine-tuned model) is subtracted from --data's.")] = None,
    seed: Seed = 0,
    fields: Fields = None,
    split: Split = None,
    template: Template = "raw",
    device: Device = "auto",
    log: Log = None,
    force: Force = False,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Project the fine-tune's direction out of the residual stream and write the model."""
    from wrapcli.terminal.console import errors_as_exit, stderr
    from wrapcli.textdata.sources import reading

    with errors_as_exit(debug), reading(fields, split, template):
        from wrapcli.core.files import check_model_outputs
        from wrapcli.core.runtime import resolve_device
        from wrapcli.report import envelope as reports
        from wrapcli.runs import ablate as run

        check_model_outputs(out, log, [ckpt, data, reference, contrast])
        device = resolve_device(device)
        result = run.ablate(ckpt_path=ckpt, data=data, out=out, reference=reference, contrast=contrast, device=device,
                            seed=seed, force=force)
        b, a = result["before"]["report"], result["after"]["report"]
        stderr(quiet).print(f"direction from {result['hook']} (chosen on {len(result['choose_records'])} records): "
                            f"{b['accuracy']:.1%} -> {a['accuracy']:.1%} on the other {a['n']} "
                            f"[{a['ci95'][0]:.1%}, {a['ci95'][1]:.1%}]; wrote {out}")
        if log or json_out:
            inputs = [ckpt, data] + [f for f in (reference, contrast) if f]
            reports.write(reports.envelope("ablate", result, inputs=inputs, seed=seed, device=device, precision="fp32"),
                          log, json_out)
