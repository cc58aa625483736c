"""`wrapcli facts`: a world of synthetic facts (wrapcli/tasks/facts.py) written as record
files and a tokenizer, in one directory that appears whole or not at all."""

from __future__ import annotations


def write_world(out, spec, force: bool = False) -> dict:
    """Write the world of ``spec`` (a WorldSpec) to ``out``; the record count per file and
    the vocabulary size."""
    import json

    from wrapcli.core.files import atomic_path
    from wrapcli.models.checkpoint import vocab_tokenizer
    from wrapcli.tasks.facts import world

    w = world(spec)
    with atomic_path(out, directory=True, markers=("world.json",), force=force) as tmp:
        for name, records in w["files"].items():
            (tmp / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        vocab_tokenizer(w["vocab"]).save_pretrained(str(tmp / "tokenizer"))
        (tmp / "world.json").write_text(json.dumps({"spec": w["spec"], "sets": w["sets"],
                                                    "files": {k: len(v) for k, v in w["files"].items()}}, indent=1))
    return {"files": {k: len(v) for k, v in w["files"].items()}, "vocab": len(w["vocab"])}
