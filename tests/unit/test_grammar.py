"""The PCFG sampler against an independent recogniser and the protocol's figures."""

import numpy as np
import pytest

from wrapcli.tasks import grammar, vocab


def derives(text: str, symbol: str = "s") -> bool:
    """Chart recogniser (CYK-style, bottom-up over spans) written from the rule table as
    text, independent of the sampler's arrays: does ``symbol`` derive ``text`` exactly?"""
    n = len(text)
    spans = {}  # symbol -> {start: set(ends)}

    def ends(sym, i):
        if sym in vocab.TERMINALS:
            return {i + 1} if i < n and text[i] == sym else set()
        return spans[sym].get(i, set())

    for sym in reversed(grammar.NONTERMINALS):  # children are defined before parents
        table = {}
        for i in range(n):
            found = set()
            for rule in grammar.RULES[sym]:
                frontier = {i}
                for child in rule.split():
                    frontier = {e for s in frontier for e in ends(child, s)}
                found |= frontier
            if found:
                table[i] = found
        spans[sym] = table
    return n in spans[symbol].get(0, set())


def test_recogniser_rejects_non_strings():
    assert derives("ca", "d") and derives("abc", "d") and not derives("cb", "d")
    assert not derives("abc" * 90)


def test_every_sampled_string_is_grammatical():
    flat, lengths = grammar.sample_strings(np.random.default_rng(1), 20)
    starts = np.concatenate(([0], np.cumsum(lengths)))
    for i in range(20):
        s = "".join("abc"[t] for t in flat[starts[i] : starts[i + 1]])
        assert derives(s), s
    # A one-letter edit almost always breaks grammaticality: the recogniser has teeth.
    s = "".join("abc"[t] for t in flat[: lengths[0]])
    broken = s[:10] + {"a": "b", "b": "c", "c": "a"}[s[10]] + s[11:]
    assert not derives(broken)


def test_lengths_and_letter_frequencies_match_protocol():
    flat, lengths = grammar.sample_strings(np.random.default_rng(2), 20000)
    # docs/protocol.md: 170-370 terminals, mean about 270.
    assert 150 <= lengths.min() and lengths.max() <= 390
    assert 260 <= lengths.mean() <= 285
    freq = np.bincount(flat, minlength=3) / len(flat)
    assert np.allclose(freq, 1 / 3, atol=0.01)


@pytest.mark.parametrize("text_len", [48, 250])
def test_windows_are_contiguous_slices_of_long_enough_strings(text_len):
    seed = 3
    windows = grammar.sample_windows(np.random.default_rng(seed), 50, text_len)
    # Replay the sampler's first draw to recover the source strings.
    rng = np.random.default_rng(seed)
    flat, lengths = grammar.sample_strings(rng, 50 + 25 + 8)
    starts = np.concatenate(([0], np.cumsum(lengths)))
    sources = ["".join("abc"[t] for t in flat[starts[i] : starts[i + 1]]) for i in range(len(lengths))]
    long_enough = [s for s in sources if len(s) >= text_len]
    for w, src in zip(windows, long_enough):
        assert "".join("abc"[t] for t in w) in src
