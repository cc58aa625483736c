"""Conjugate prompting (Kotha et al. 2024; docs/protocol.md "Conjugate prompting").

An invertible relabelling s of the letters a, b, c moves a prompt away from the
fine-tuning distribution while keeping the capability it needs: the model answers
s(prompt) and the answer is mapped back with s⁻¹. Counts and positions are invariant
under s; a letter answer (the token task) is mapped back.
"""

from __future__ import annotations

import numpy as np

from wrapcli.core.errors import UsageError
from wrapcli.tasks import vocab
from wrapcli.tasks.sequences import Batch


def parse_mapping(text: str) -> dict[str, str]:
    """``"a:c,c:a"`` -> a permutation of a, b, c (letters not named map to themselves)."""
    mapping = {t: t for t in vocab.TERMINALS}
    if not text.strip():
        raise UsageError("--conjugate is empty: give pairs like a:c,c:a over a, b, c")
    for part in text.split(","):
        src, sep, dst = (x.strip() for x in part.partition(":"))
        if not sep or src not in vocab.TERMINALS or dst not in vocab.TERMINALS:
            raise UsageError(f"invalid relabelling {text!r}: expected pairs like a:c,c:a over a, b, c")
        mapping[src] = dst
    if sorted(mapping.values()) != sorted(vocab.TERMINALS):
        raise UsageError(f"--conjugate {text!r} is not invertible: {mapping}")
    return mapping


def token_map(mapping: dict[str, str]) -> np.ndarray:
    """Vocabulary-sized lookup table applying ``mapping`` to letters and composite operands."""
    table = np.arange(vocab.VOCAB_SIZE)
    for src, dst in mapping.items():
        table[vocab.ID[src]] = vocab.ID[dst]
    for comp in vocab.COMPOSITES:
        table[vocab.ID[comp]] = vocab.ID[mapping[comp[0]] + mapping[comp[1]]]
    return table


def relabel(batch: Batch, mapping: dict[str, str]) -> Batch:
    """s(prompt): the batch with letters relabelled in the operand slot, the text and
    letter answers; family, parameter, specials and numbers untouched."""
    table = token_map(mapping)
    tokens = batch.tokens.copy()
    tokens[:, 2:-3] = table[tokens[:, 2:-3]]  # operand .. <eot>; the <ans> slot is a special
    tokens[:, -2] = table[tokens[:, -2]]
    return Batch(tokens, tokens[:, -2].copy(), batch.component, batch.operand, batch.spurious)


def unmap(predictions: np.ndarray, mapping: dict[str, str]) -> np.ndarray:
    """s⁻¹(answer)."""
    inverse = {dst: src for src, dst in mapping.items()}
    return token_map(inverse)[predictions]
