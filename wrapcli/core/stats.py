"""Uncertainty for the figures reports give: every accuracy travels with its count and a
95% interval, and every comparison a verdict makes is made on intervals, not points.

- An accuracy k/n gets the Wilson score interval (Wilson 1927): unlike the normal
  approximation it stays inside [0, 1] and keeps its coverage near 0% and 100%, where
  counting accuracies often sit.
- A difference of two accuracies on different examples gets Newcombe's hybrid score
  interval (Newcombe 1998, method 10), built from the two Wilson intervals. On the same
  examples (a base and its fine-tune on one record file, compare's behaviour criterion)
  it gets Newcombe's interval for paired proportions (Newcombe 1998b, method 10: the two
  Wilson intervals combined with the correlation of the pairs), which is far tighter: two
  models that agree on every example differ by exactly 0, where the unpaired interval
  would still be several points wide. A probe against its baselines on one held-out split
  uses a paired bootstrap over the examples, as does a ratio of paired differences (the
  recovered fraction of relearning).
- A mean over seeds gets a Student-t interval; a ratio of steps over seeds (revival
  speed-up) gets a percentile bootstrap of the ratio of geometric means, with a fixed
  resampling seed so the same report gives the same interval.
- Where one verdict looks at several figures and keeps the best (the best probe layer,
  the best K of a pruning sweep), the interval is widened by Bonferroni's correction,
  so the chance of a false "pass" stays at most 5% over the whole family.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_DRAWS = 4000
BOOTSTRAP_SEED = 0


def z_value(confidence: float = CONFIDENCE) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def family_confidence(m: int, confidence: float = CONFIDENCE) -> float:
    """Per-comparison confidence that keeps ``m`` comparisons at ``confidence`` together."""
    return 1 - (1 - confidence) / max(1, m)


def wilson(k: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials; (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k <= 0 else max(0.0, centre - half)
    hi = 1.0 if k >= n else min(1.0, centre + half)  # exact at the ends, not 1 - 1 ulp
    return lo, hi


def proportion(k: float, n: int, confidence: float = CONFIDENCE) -> dict:
    """``{"accuracy", "n", "ci95"}`` for ``k`` right out of ``n``."""
    lo, hi = wilson(k, n, confidence)
    return {"accuracy": k / n if n else 0.0, "n": int(n), "ci95": [lo, hi]}


def difference(p1: float, n1: int, p2: float, n2: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Newcombe's interval for p1 - p2 (independent samples; for the paired samples wrapcli
    compares on the same examples it is conservative)."""
    l1, u1 = wilson(p1 * n1, n1, confidence)
    l2, u2 = wilson(p2 * n2, n2, confidence)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def paired_newcombe(a_correct, b_correct, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a) - mean(b) for 0/1 outcomes on the same examples, and Newcombe's interval for
    a difference of paired proportions (1998b, method 10): with a = both right, b = only
    the first, c = only the second, d = neither, the two marginal Wilson intervals are
    combined through phi, the correlation of the pairs, taken as 0 when a margin is empty
    and shrunk by n/2 when positive (Newcombe's correction)."""
    x = np.asarray(a_correct, dtype=bool)
    y = np.asarray(b_correct, dtype=bool)
    n = len(x)
    both, first, second = int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum())
    neither = n - both - first - second
    p1, p2 = (both + first) / n, (both + second) / n
    l1, u1 = wilson(both + first, n, confidence)
    l2, u2 = wilson(both + second, n, confidence)
    margins = (both + first) * (second + neither) * (both + second) * (first + neither)
    cross = both * neither - first * second
    phi = 0.0
    if margins > 0:
        phi = ((cross - n / 2) if cross > n / 2 else min(cross, 0)) / math.sqrt(margins)
    d1, d2 = p1 - l1, u2 - p2
    e1, e2 = u1 - p1, p2 - l2
    lower = math.sqrt(max(0.0, d1 * d1 + d2 * d2 - 2 * phi * d1 * d2))
    upper = math.sqrt(max(0.0, e1 * e1 + e2 * e2 - 2 * phi * e1 * e2))
    return p1 - p2, p1 - p2 - lower, p1 - p2 + upper


def paired_ratio(numerator_pairs, denominator_pairs, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean(a) - mean(b)) / (mean(c) - mean(d)) over the same examples, each given as
    per-example (a, b) and (c, d) arrays, with a percentile bootstrap that resamples the
    examples (every array with the same draw); resamples whose denominator is 0 are left
    out. The recovered fraction of relearning is one: (after - start) / (original - start)."""
    a, b = (np.asarray(v, dtype=np.float64) for v in numerator_pairs)
    c, d = (np.asarray(v, dtype=np.float64) for v in denominator_pairs)
    num, den = a - b, c - d
    point = float(num.mean() / den.mean())
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    idx = rng.integers(0, len(num), (BOOTSTRAP_DRAWS, len(num)))
    top, bottom = num[idx].mean(1), den[idx].mean(1)
    ratios = top[bottom != 0] / bottom[bottom != 0]
    if not len(ratios):  # every resample lost the denominator: a handful of records, no spread to give
        return point, point, point
    lo, hi = np.quantile(ratios, [(1 - confidence) / 2, (1 + confidence) / 2])
    return point, float(lo), float(hi)


def paired_difference(a_correct, b_correct, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean of ``a_correct - b_correct`` (per-example 0/1 on the same examples) and its
    percentile bootstrap interval over the examples."""
    d = np.asarray(a_correct, dtype=np.float64) - np.asarray(b_correct, dtype=np.float64)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = d[rng.integers(0, len(d), (BOOTSTRAP_DRAWS, len(d)))].mean(1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(d.mean()), float(lo), float(hi)


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and Student-t interval of ``values``; a single value has no spread to use,
    so its interval is (mean, mean) and the caller must say so."""
    from scipy.stats import t

    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    half = float(t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def bootstrap_ratio(slow, fast, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Geometric mean of ``slow`` / geometric mean of ``fast`` (e.g. a control's steps over
    the revived model's), with a percentile bootstrap interval that resamples each group's
    seeds independently. Values must be > 0."""
    slow = np.log(np.asarray(slow, dtype=np.float64))
    fast = np.log(np.asarray(fast, dtype=np.float64))
    point = float(np.exp(slow.mean() - fast.mean()))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    s = slow[rng.integers(0, len(slow), (BOOTSTRAP_DRAWS, len(slow)))].mean(1)
    f = fast[rng.integers(0, len(fast), (BOOTSTRAP_DRAWS, len(fast)))].mean(1)
    lo, hi = np.quantile(np.exp(s - f), [(1 - confidence) / 2, (1 + confidence) / 2])
    return point, float(lo), float(hi)
