"""``wrapcli quantize``: the quantization attack on unlearning (Zhang et al. 2024,
"Catastrophic failure of LLM unlearning via quantization"): round every linear map in the
blocks to 8 or 4 bits, round to nearest per group or bitsandbytes' NF4, and write the model
de-quantized, as an ordinary checkpoint (a Hugging Face directory stays one) that eval,
compare and the rest read. The scheme, bits and group size go into its lineage.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from wrapcli.commands._options import Debug, Force, Json, Log, Quiet

SUMMARY = "Round a model's weights to 8 or 4 bits: does the unlearned capability come back?"  # its line in wrapcli --help
EXAMPLE = """Example:

  wrapcli quantize unlearned/ --scheme nf4 -o unlearned-nf4/ && wrapcli eval unlearned-nf4/ --data forget.jsonl
      # 4-bit NF4 in blocks of 64, as bitsandbytes quantizes; then score the forgotten records

  wrapcli quantize ft.safetensors --scheme rtn --bits 4 --group-size 128 -o ft-rtn4.safetensors --log q.json
"""


def quantize(
    ckpt: Annotated[str, typer.Argument(help="Checkpoint to quantize (.safetensors or a Hugging Face directory).")],
    out: Annotated[str, typer.Option("-o", "--out", help="Where to write the de-quantized model (.safetensors for a .safetensors checkpoint, a directory for a directory).")],
    scheme: Annotated[Literal["nf4", "rtn"], typer.Option("--scheme", help="nf4 (bitsandbytes' 4-bit NormalFloat code book, absmax per block) or rtn (round to nearest, symmetric, absmax per group of an output channel).")] = "nf4",
    bits: Annotated[int, typer.Option("--bits", help="Bits per weight: 4 for nf4; 8, 4, 3 or 2 for rtn.")] = 4,
    group_size: Annotated[Optional[int], typer.Option("--group-size", help="rtn: inputs per group of one output channel (0: the whole channel); nf4: values per block of the flattened tensor. Default 64.")] = None,
    log: Log = None,
    force: Force = False,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Round every linear map in the blocks to a few bits and write the model de-quantized."""
    from wrapcli.terminal.console import errors_as_exit, stderr

    with errors_as_exit(debug):
        from wrapcli.core.files import check_model_outputs
        from wrapcli.report import envelope as reports
        from wrapcli.runs import quantize as run

        check_model_outputs(out, log, [ckpt])
        result = run.quantize(ckpt_path=ckpt, out=out, scheme=scheme, bits=bits,
                              group_size=run.DEFAULT_GROUP if group_size is None else group_size, force=force)
        stderr(quiet).print(f"{result['scheme']} {result['bits']}-bit, groups of {result['group_size'] or 'a channel'}: "
                            f"{result['n_tensors']} weights, mean relative change {result['mean_relative_change']:.4f}; "
                            f"wrote {out}")
        if log or json_out:
            reports.write(reports.envelope("quantize", result, inputs=[ckpt], device="cpu", precision="fp32"), log,
                          json_out)
