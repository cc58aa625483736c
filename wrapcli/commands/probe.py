"""``wrapcli probe``: per-layer linear probes (PROTOCOL.md "Probing").

Report ``results``: ``checkpoint``; ``target`` (what the probes decode); ``n`` examples and
``n_classes``; ``reference``; ``layers``: one entry per layer ``B0`` (embedding output) ..
``Bn`` (block n's output) with ``accuracy`` (held-out, 25% split), ``majority_baseline``
(most common training label, scored on the held-out split), ``n_train``, ``n_test``,
``random_init`` (the same probe on a randomly initialised model of the same config) and
``reference`` (on ``--reference``, if given); ``attention``: per model, a list of
``{layer, head, a, b, c}`` — the mean share of attention from the ``<ans>`` position onto
text tokens equal to each letter (built-in tasks only).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from wrapcli.commands._options import Debug, Device, Json, Out, Quiet, Seed

EXAMPLE = """Example:

  wrapcli probe ft.safetensors --target count:a --reference pt.safetensors -o probe.json

  wrapcli probe ft.safetensors --target count:a --prompt count:b   # count(a) on count:b prompts

  wrapcli probe my-model/ --data twist.jsonl --position mean-last-10 -o probe.json
"""


def probe(
    ckpt: Annotated[str, typer.Argument(help="Checkpoint to probe (.safetensors or HF directory).")],
    target: Annotated[Optional[str], typer.Option("--target", help="What to decode, e.g. count:a (its answer on each text).")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Prompt with this task instead of the target's own, e.g. count:b.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="JSONL of {text, label} instead of a built-in task (HF directory with tokenizer).")] = None,
    position: Annotated[str, typer.Option("--position", help="With --data: last or mean-last-K (the paper's TinyStories probes: mean-last-10).")] = "last",
    n: Annotated[int, typer.Option("--n", help="Examples (75% fit, 25% held out).")] = 2000,
    reference: Annotated[Optional[str], typer.Option("--reference", help="Probe this checkpoint too (e.g. the pretrained model).")] = None,
    attention: Annotated[bool, typer.Option("--attention/--no-attention", help="Summarise attention from <ans> onto a, b, c.")] = True,
    seed: Seed = 0,
    device: Device = "auto",
    out: Out = None,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Is the capability still linearly decodable, layer by layer?"""
    from wrapcli.console import errors_as_exit, stderr

    with errors_as_exit(debug):
        from wrapcli import probing, reports
        from wrapcli.errors import WrapError
        from wrapcli.files import check_outputs
        from wrapcli.models import resolve_device

        if n < 8:
            raise WrapError(f"--n must be >= 8, got {n}")
        check_outputs(out)
        device = resolve_device(device)
        result = probing.probe(ckpt_path=ckpt, target=target, prompt=prompt, data=data, position=position,
                               n=n, reference=reference, seed=seed, device=device, attention=attention)
        con = stderr(quiet)
        con.print(layer_table(result))
        if result.get("attention"):
            con.print(attention_table(result["attention"]["model"]))
        inputs = [ckpt] + ([reference] if reference else []) + ([data] if data else [])
        reports.write(reports.envelope("probe", result, inputs=inputs, seed=seed, device=device), out, json_out)


def layer_table(result: dict):
    from rich.table import Table

    table = Table(title=f"{result['checkpoint']}: linear probes for {result['target']} (held-out accuracy)")
    extra = [k for k in ("random_init", "reference") if k in result["layers"][0]]
    for col in ["layer", "probe", "majority", *extra]:
        table.add_column(col, justify="right")
    for row in result["layers"]:
        table.add_row(row["layer"], f"{row['accuracy']:.1%}", f"{row['majority_baseline']:.1%}",
                      *[f"{row[k]:.1%}" for k in extra])
    return table


def attention_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="attention from <ans> onto each letter (share)")
    for col in ("layer", "head", "a", "b", "c"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["layer"]), str(r["head"]), *(f"{r[t]:.2f}" for t in "abc"))
    return table
