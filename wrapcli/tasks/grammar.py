"""The paper's probabilistic context-free grammar, sampled in batches with numpy.

Sixteen non-terminals in six levels (s; p q r; m n o; j k l; g h i; d e f) over three
terminals a b c, every rule chosen with probability 0.5 (docs/protocol.md, "Data"; Jain et al.
2024, App. B). Because every rule of level L only produces symbols of level L+1, a
whole batch expands one level at a time with array operations instead of recursion,
which keeps generation far ahead of the trainer (benchmarks/bench_data.py).
"""

from __future__ import annotations

import numpy as np

from wrapcli.tasks import vocab

NONTERMINALS = "s p q r m n o j k l g h i d e f".split()

RULES: dict[str, tuple[str, str]] = {
    "s": ("r q", "q p"),
    "p": ("m n o", "n o m"), "q": ("n m o", "m n"), "r": ("o m", "m o n"),
    "m": ("l j", "j l k"), "n": ("k j l", "l j k"), "o": ("l k j", "k j"),
    "j": ("h i", "i h"), "k": ("h g i", "g h i"), "l": ("i h g", "h i g"),
    "g": ("d f e", "f e d"), "h": ("e d f", "d e f"), "i": ("e f d", "f d e"),
    "d": ("c a", "a b c"), "e": ("c b", "c a b"), "f": ("c b a", "b a"),
}
N_LEVELS = 6

# Symbol ids: non-terminals 0..15 in the order above, terminals 16..18.
_SYMBOLS = NONTERMINALS + list(vocab.TERMINALS)
_SYM = {s: i for i, s in enumerate(_SYMBOLS)}
TERMINAL_SYMBOL_BASE = len(NONTERMINALS)

# RHS[symbol, rule] -> up to three child symbol ids, padded with -1.
_RHS = np.full((len(NONTERMINALS), 2, 3), -1, dtype=np.int64)
for _nt, _rules in RULES.items():
    for _r, _rhs in enumerate(_rules):
        _kids = [_SYM[x] for x in _rhs.split()]
        _RHS[_SYM[_nt], _r, : len(_kids)] = _kids


def sample_strings(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` full expansions of ``s``.

    Returns ``(flat, lengths)``: ``flat`` holds the terminals (0=a, 1=b, 2=c) of all
    strings back to back, ``lengths[i]`` the length of string ``i``.
    """
    symbols = np.full(n, _SYM["s"], dtype=np.int64)  # (total symbols at this level,)
    owner = np.arange(n)  # which string each symbol belongs to
    for _ in range(N_LEVELS):
        rule = rng.integers(0, 2, size=symbols.shape[0])
        kids = _RHS[symbols, rule]  # (total, 3)
        keep = kids >= 0
        # Row-major boolean indexing keeps every string's symbols in order.
        owner = np.repeat(owner, keep.sum(axis=1))
        symbols = kids[keep]
    lengths = np.bincount(owner, minlength=n)
    return symbols - TERMINAL_SYMBOL_BASE, lengths


def sample_windows(rng: np.random.Generator, n: int, text_len: int) -> np.ndarray:
    """``n`` texts of ``text_len`` terminals, each a random contiguous window of one
    full expansion (uniform start), as an ``(n, text_len)`` int array of 0/1/2.

    Expansions shorter than ``text_len`` are discarded and redrawn (the paper does not
    say; rejection keeps every window a true substring of one grammatical string).
    """
    out = np.empty((n, text_len), dtype=np.int64)
    filled = 0
    while filled < n:
        need = n - filled
        flat, lengths = sample_strings(rng, need + need // 2 + 8)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        ok = np.flatnonzero(lengths >= text_len)[:need]
        offset = rng.integers(0, lengths[ok] - text_len + 1)  # uniform window start
        index = (starts[ok] + offset)[:, None] + np.arange(text_len)  # (m, text_len)
        out[filled : filled + len(ok)] = flat[index]
        filled += len(ok)
    return out
