"""Turn grammar windows into task sequences, answers and the spurious feature.

Layout (docs/protocol.md "Data"), ``X = text_len``, length ``T = X + 9``, no padding (shape
letters: wrapcli/models/build.py):

    pos  0     1         2        3       4      5..X+4  X+5    X+6    X+7     X+8
         <bos> <family>  operand  param   <sot>  text    <eot>  <ans>  answer  <eos>

``param`` is the task's number: O' (window) for counting, k for indexing, the offset
for the token task; the token task's operand slot holds ``<none>``. Answers:

- count ``x``: occurrences of ``x`` in the last ``window`` text positions;
- count ``xy``: occurrences of the bigram (overlapping) with both letters in that window;
- index ``x``/``xy``: position, counted back from ``<eot>`` (last text token = 1), of the
  k-th occurrence from the end (a bigram's position is its first letter's); ``<none>``
  when there are fewer than k;
- token: the terminal ``offset`` positions before ``<eot>`` (position ``offset`` counted back).

Spurious feature (pairs ``x``, ``y`` = ``spurious_operands``, offset q). The paper does
not give its insertion algorithm; ours keeps length and every ``x`` untouched and edits
only the counted region, choosing positions uniformly at random:

- count: in the last ``window`` positions, make count(y) = count(x) + q by turning
  randomly chosen third-letter tokens into ``y`` (or surplus ``y`` into the third letter);
- index: make the k-th ``y`` from the end sit at (k-th ``x`` position) + q, by setting that
  position to ``y`` and turning ``y``/third-letter tokens after it into each other so
  that exactly k-1 ``y`` lie closer to ``<eot>``.

A string where the edit is impossible (too few third-letter tokens, an ``x`` at the
target position, fewer than k ``x``) is redrawn. With ``spurious = C > 0`` exactly
``round(C * n)`` strings of a batch carry the feature and the relation is made to fail in
all others (chance coincidences redrawn), so "with" and "without" are clean test sets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from wrapcli.tasks import vocab
from wrapcli.tasks.grammar import sample_windows
from wrapcli.tasks.spec import COUNTING, INDEXING, Component, TaskSpec

LETTER = {t: i for i, t in enumerate(vocab.TERMINALS)}  # grammar letters are 0/1/2


@dataclass
class Batch:
    """A generated batch. ``tokens`` (n, T) int64; ``answer`` (n,) answer token ids;
    ``component`` (n,) index into the spec's components; ``operand`` (n,) operand
    strings ("" for the token task); ``spurious`` (n,) whether the feature was planted."""

    tokens: np.ndarray
    answer: np.ndarray
    component: np.ndarray
    operand: np.ndarray
    spurious: np.ndarray

    @property
    def answer_pos(self) -> int:
        """Index of the <ans> token, whose logits predict the answer."""
        return answer_pos(self.tokens)


def seq_len(text_len: int) -> int:
    return text_len + 9


TEXT_START = 5  # the text follows <bos> <family> operand param <sot>
AFTER_ANS = 2  # the answer and <eos> follow <ans>


def answer_pos(tokens: np.ndarray) -> int:
    """Index of ``<ans>`` in whole sequences (n, T): the third position from the end."""
    return tokens.shape[1] - 1 - AFTER_ANS


# -- answers (vectorised over rows) -------------------------------------------------
def _matches(texts: np.ndarray, operand: np.ndarray) -> np.ndarray:
    """(n, text_len) bool: text position i starts an occurrence of the row's operand.
    ``operand`` is (n, 2) letters with -1 in the second column for single letters."""
    first = texts == operand[:, :1]
    second = np.ones_like(first)
    second[:, :-1] = texts[:, 1:] == operand[:, 1:2]
    second[:, -1] = False  # a bigram cannot start at the last position
    return first & np.where(operand[:, 1:2] >= 0, second, True)


def count_answers(texts: np.ndarray, operand: np.ndarray, window: int) -> np.ndarray:
    m = _matches(texts[:, -window:], operand)
    return m.sum(axis=1)


def index_answers(texts: np.ndarray, operand: np.ndarray, k: int) -> np.ndarray:
    """Position counted back (1-based) of the k-th occurrence from the end; -1 if none."""
    back = _matches(texts, operand)[:, ::-1]  # back[:, j] is position j + 1 counted back
    hits = np.cumsum(back, axis=1)
    found = hits[:, -1] >= k
    pos = np.argmax(hits >= k, axis=1) + 1
    return np.where(found, pos, -1)


def operand_letters(operands: np.ndarray) -> np.ndarray:
    """Operand strings -> (n, 2) letter ids, -1 where absent."""
    out = np.full((len(operands), 2), -1, dtype=np.int64)
    for j in range(2):
        out[:, j] = [LETTER[o[j]] if len(o) > j else -1 for o in operands]
    return out


def answers(spec: TaskSpec, families: np.ndarray, operands: np.ndarray, texts: np.ndarray):
    """Answer token ids for each row (family names, the operands the answers are for,
    texts)."""
    letters = operand_letters(operands)
    out = np.empty(len(texts), dtype=np.int64)
    counting = np.isin(families, COUNTING)
    indexing = np.isin(families, INDEXING)
    token = families == "token"
    if counting.any():
        out[counting] = vocab.NUMBER_BASE + count_answers(
            texts[counting], letters[counting], spec.window
        )
    if indexing.any():
        pos = index_answers(texts[indexing], letters[indexing], spec.k)
        out[indexing] = np.where(pos > 0, vocab.NUMBER_BASE + pos, vocab.NONE)
    if token.any():
        out[token] = vocab.TERMINAL_BASE + texts[token, spec.text_len - spec.offset]
    return out


# -- spurious feature ---------------------------------------------------------------
def relation_holds(spec: TaskSpec, family: str, text: np.ndarray) -> bool:
    """Whether the spurious relation already holds in one text (family count/index)."""
    x, y = (LETTER[o] for o in spec.spurious_operands)
    q = spec.spurious_offset
    if family == "count":
        w = text[-spec.window :]
        return int((w == y).sum()) == int((w == x).sum()) + q
    px = _kth_back(text, x, spec.k)
    py = _kth_back(text, y, spec.k)
    return px > 0 and py == px + q


def _kth_back(text: np.ndarray, letter: int, k: int) -> int:
    where = np.flatnonzero(text[::-1] == letter)
    return int(where[k - 1]) + 1 if len(where) >= k else -1


def plant(spec: TaskSpec, family: str, text: np.ndarray, rng: np.random.Generator) -> bool:
    """Edit ``text`` in place so the spurious relation holds; False if impossible."""
    x, y = (LETTER[o] for o in spec.spurious_operands)
    z = 3 - x - y  # the third letter
    q = spec.spurious_offset
    if family == "count":
        w = text[-spec.window :]  # a view: edits land in text
        need = int((w == x).sum()) + q - int((w == y).sum())
        src, dst = (z, y) if need > 0 else (y, z)
        return _swap(w, src, dst, abs(need), rng)
    back = text[::-1]  # a view; back[j] is position j + 1 counted back
    px = _kth_back(text, x, spec.k)
    target = px + q - 1  # index into back
    if px < 0 or target >= len(back) or back[target] == x:
        return False
    back[target] = y
    before = back[:target]
    need = (spec.k - 1) - int((before == y).sum())
    src, dst = (z, y) if need > 0 else (y, z)
    return _swap(before, src, dst, abs(need), rng)


def _swap(region: np.ndarray, src: int, dst: int, n: int, rng) -> bool:
    where = np.flatnonzero(region == src)
    if len(where) < n:
        return False
    region[rng.choice(where, size=n, replace=False)] = dst
    return True


# -- batches ------------------------------------------------------------------------
def make_batch(
    spec: TaskSpec, rng: np.random.Generator, n: int, clean: bool | None = None
) -> Batch:
    """``n`` sequences of ``spec``. ``clean`` (default: ``spec.spurious > 0``) makes the
    relation fail in every string that does not carry the feature."""
    if clean is None:
        clean = spec.spurious > 0
    comp = rng.integers(0, len(spec.components), size=n)
    families = np.array([spec.components[i].family for i in comp])
    operands = _draw_operands(spec, comp, rng)
    texts = sample_windows(rng, n, spec.text_len)
    planted = np.zeros(n, dtype=bool)
    if spec.spurious > 0 or clean:
        planted[rng.permutation(n)[: int(round(spec.spurious * n))]] = True
        _enforce_relation(spec, families, texts, planted, clean, rng)
    answered = operands.copy()
    for i, c in enumerate(spec.components):
        if c.answer is not None:
            answered[comp == i] = c.answer
    ans = answers(spec, families, answered, texts)
    tokens = np.empty((n, seq_len(spec.text_len)), dtype=np.int64)
    tokens[:, 0] = vocab.BOS
    tokens[:, 1] = [vocab.FAMILY_ID[f] for f in families]
    tokens[:, 2] = [vocab.operand_id(o) if o else vocab.NONE for o in operands]
    tokens[:, 3] = [vocab.number_id(_param(spec, f)) for f in families]
    tokens[:, 4] = vocab.SOT
    tokens[:, TEXT_START : TEXT_START + spec.text_len] = texts + vocab.TERMINAL_BASE
    tokens[:, -4:] = np.stack(
        [np.full(n, vocab.EOT), np.full(n, vocab.ANS), ans, np.full(n, vocab.EOS)], axis=1
    )
    return Batch(tokens, ans, comp, operands, planted)


def _param(spec: TaskSpec, family: str) -> int:
    if family in COUNTING:
        return spec.window
    return spec.k if family in INDEXING else spec.offset


def _draw_operands(spec: TaskSpec, comp: np.ndarray, rng) -> np.ndarray:
    names, probs = zip(*spec.prior)
    out = np.empty(len(comp), dtype=object)
    for i, c in enumerate(spec.components):
        rows = np.flatnonzero(comp == i)
        if c.family == "token":
            out[rows] = ""
        elif c.operand is not None:
            out[rows] = c.operand
        else:
            width = 2 if c.family in ("count_composite", "index_composite") else 1
            letters = rng.choice(np.array(names), size=(len(rows), width), p=probs)
            out[rows] = ["".join(r) for r in letters]
    return out.astype(str)


def _enforce_relation(spec, families, texts, planted, clean, rng) -> None:
    """Plant the feature in ``planted`` rows and (if ``clean``) break it elsewhere,
    redrawing a row's text until that is possible."""
    for i in range(len(texts)):
        family = "count" if families[i] in COUNTING else families[i]
        if family not in ("count", "index"):
            continue
        for _ in range(1000):
            if planted[i]:
                if plant(spec, family, texts[i], rng):
                    break
            elif not (clean and relation_holds(spec, family, texts[i])):
                break
            texts[i] = sample_windows(rng, 1, spec.text_len)[0]
        else:
            raise RuntimeError("could not build a string with the requested spurious feature")


def batch_for_step(spec: TaskSpec, step: int, n: int, stream: int = 0) -> Batch:
    """The training batch of ``step``: a pure function of (seed, stream, step), so a
    resumed or data-parallel run sees exactly the data an uninterrupted one would."""
    return make_batch(spec, np.random.default_rng([spec.seed, stream, step]), n)


EVAL_STREAM = 1_000_000  # stream ids below this are training streams


@functools.lru_cache(maxsize=64)
def eval_batch(spec: TaskSpec, component: Component, n: int, spurious: bool | None) -> Batch:
    """The fixed evaluation set of one component: natural strings (``spurious=None``),
    strings without the feature (False, C_Te=0) or all with it (True, C_Te=1).
    Cached: sweeps and curves score many models on the same sets (treat as read-only)."""
    fixed = spec.fixed(component)
    key = {None: 0, False: 1, True: 2}[spurious]
    rng = np.random.default_rng([spec.seed, EVAL_STREAM + key, *map(ord, str(component))])
    if spurious is None:
        return make_batch(fixed.replace(spurious=0.0), rng, n, clean=False)
    return make_batch(fixed.replace(spurious=1.0 if spurious else 0.0), rng, n, clean=True)
