"""The fixed vocabulary of the synthetic tasks (docs/protocol.md, "Data").

Every synthetic checkpoint stores this list in its metadata, and a checkpoint whose
list differs is refused by the task code, so token ids never silently change meaning.
Layout (ids in order):

- specials: ``<pad> <bos> <eos> <sot> <eot> <ans> <none>``; ``<none>`` answers an index
  question whose k-th occurrence does not exist;
- task families: ``<count> <count_composite> <index> <index_composite> <token>`` and two
  spare counting families ``<count2> <count3>`` for the paper's "jailbreak" setup;
- terminals ``a b c`` (a single-letter operand is the terminal itself);
- composite operands ``aa ab ... cc`` (9 tokens);
- numbers ``0 .. 255``: answers (counts, indices) and the task parameter in the
  window slot (O' for counting, k for indexing, the offset for the token task).

Size: 7 + 7 + 3 + 9 + 256 = 282 tokens.
"""

from __future__ import annotations

import itertools

SPECIALS = ("<pad>", "<bos>", "<eos>", "<sot>", "<eot>", "<ans>", "<none>")
FAMILIES = ("count", "count_composite", "index", "index_composite", "token", "count2", "count3")
TERMINALS = ("a", "b", "c")
COMPOSITES = tuple(x + y for x, y in itertools.product(TERMINALS, repeat=2))
MAX_NUMBER = 255

TOKENS: tuple[str, ...] = (
    SPECIALS
    + tuple(f"<{f}>" for f in FAMILIES)
    + TERMINALS
    + COMPOSITES
    + tuple(str(n) for n in range(MAX_NUMBER + 1))
)
ID = {tok: i for i, tok in enumerate(TOKENS)}

PAD, BOS, EOS, SOT, EOT, ANS, NONE = (ID[t] for t in SPECIALS)
FAMILY_ID = {f: ID[f"<{f}>"] for f in FAMILIES}
# Terminal ids are contiguous: grammar code works with 0/1/2 and adds this offset.
TERMINAL_BASE = ID["a"]
NUMBER_BASE = ID["0"]
VOCAB_SIZE = len(TOKENS)


def operand_id(operand: str) -> int:
    """Token id of a single (``a``) or composite (``ab``) operand."""
    return ID[operand]


def number_id(n: int) -> int:
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"number {n} is outside the vocabulary's 0..{MAX_NUMBER}")
    return NUMBER_BASE + n
