"""`wrapcli quantize`: load a checkpoint, round its block weights (wrapcli/analyses/
quantization.py), write it de-quantized in the form it came in (a Hugging Face directory
stays one, tokenizer included) with the scheme in its lineage, and assemble the report's
results (schema QUANTIZE)."""

from __future__ import annotations

from wrapcli.core.errors import UsageError
from wrapcli.models.lineage import lineage_entry

DEFAULT_GROUP = 64  # the group (RTN) or block (NF4) size of the quantization attacks in the field


def check_scheme(scheme: str, bits: int, group_size: int) -> None:
    """The scheme's usage errors, before any work."""
    from wrapcli.analyses.quantization import SCHEMES

    if scheme not in SCHEMES:
        raise UsageError(f"--scheme {scheme}: expected one of {', '.join(SCHEMES)}")
    if scheme == "nf4" and bits != 4:
        raise UsageError(f"--bits {bits}: NF4 is a 4-bit code book; give --bits 4 or --scheme rtn")
    if scheme == "rtn" and bits not in (2, 3, 4, 8):
        raise UsageError(f"--bits {bits}: round-to-nearest takes 2, 3, 4 or 8 bits")
    if group_size < 0 or (scheme == "nf4" and group_size == 0):
        raise UsageError(f"--group-size {group_size}: expected >= 1 (0, one group per output channel, is for rtn)")


def quantize(*, ckpt_path, out, scheme="nf4", bits=4, group_size=DEFAULT_GROUP, force=False) -> dict:
    """Round every linear map in the blocks of ``ckpt_path`` and write the result to ``out``."""
    from wrapcli.analyses.quantization import quantize as rounded
    from wrapcli.models import checkpoint
    from wrapcli.models.adapters import Adapter
    from wrapcli.runs.edited import check_output_form, write_edited

    check_scheme(scheme, bits, group_size)
    if checkpoint.is_compiled(ckpt_path):
        raise UsageError(f"{ckpt_path}: a compiled (Tracr) model holds exact weights for a program; quantize takes "
                         "a wrapcli checkpoint or a Hugging Face directory")
    check_output_form(ckpt_path, out)
    ck = checkpoint.load(ckpt_path, device="cpu")
    tensors = rounded(Adapter(ck.model), scheme, bits, group_size)
    entry = lineage_entry("quantize", ck.sha256, None, 0, {}, scheme=scheme, bits=bits, group_size=group_size)
    write_edited(ck, ckpt_path, out, entry, force)
    changes = [t["relative_change"] for t in tensors]
    return {
        "checkpoint": str(ckpt_path),
        "written": str(out),
        "scheme": scheme,
        "bits": bits,
        "group_size": group_size,
        "n_tensors": len(tensors),
        "mean_relative_change": sum(changes) / len(changes) if changes else 0.0,
        "tensors": tensors,
    }
