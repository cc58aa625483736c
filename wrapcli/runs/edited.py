"""Writing a model that an attack edited (quantize, ablate) in the form it came in: a
Hugging Face directory stays one, its tokenizer copied; a wrapcli file stays one, its
vocabulary and task kept; the attack's lineage entry appended either way."""

from __future__ import annotations

from pathlib import Path

from wrapcli.core.errors import UsageError


def check_output_form(ckpt_path, out) -> None:
    """A directory is written as a directory and a .safetensors file as a .safetensors file."""
    if Path(ckpt_path).is_dir() == str(out).endswith(".safetensors"):
        raise UsageError(f"-o {out}: a Hugging Face directory is written as a directory, a .safetensors checkpoint "
                         "as a .safetensors file")


def write_edited(ck, ckpt_path, out, entry: dict, force: bool = False) -> None:
    """Write ``ck`` (its model edited) to ``out`` with ``entry`` appended to its lineage."""
    from wrapcli.models import checkpoint

    if Path(ckpt_path).is_dir():
        from wrapcli.textdata.userdata import TOKENIZER_FILES, load_tokenizer

        has_tokenizer = any((Path(ckpt_path) / f).is_file() for f in TOKENIZER_FILES)
        ck.lineage = [*ck.lineage, entry]
        checkpoint.export(ck, out, tokenizer=load_tokenizer(ckpt_path) if has_tokenizer else None, force=force)
    else:
        checkpoint.save(out, ck.model, vocab=ck.vocab, task=ck.task, lineage=[*ck.lineage, entry])
