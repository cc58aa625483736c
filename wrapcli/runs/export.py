"""`wrapcli export`: load a wrapcli checkpoint and write it as a Hugging Face directory."""

from __future__ import annotations


def export(ckpt, dest, force: bool = False) -> None:
    """``ckpt`` as a directory that AutoModelForCausalLM.from_pretrained opens, with
    wrapcli.json (vocabulary, task, lineage) beside the weights."""
    from wrapcli.models import checkpoint

    checkpoint.export(checkpoint.load(ckpt), dest, force=force)
