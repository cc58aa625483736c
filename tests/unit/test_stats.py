"""Intervals against published values and independent computations."""

import numpy as np
import pytest
from scipy import stats as sp

from wrapcli.core.stats import bootstrap_ratio, difference, family_confidence, proportion, t_interval, wilson


@pytest.mark.parametrize("k, n, expected", [
    # Newcombe (1998), Table I: Wilson score intervals
    (81, 263, (0.2553, 0.3662)),
    (15, 148, (0.0624, 0.1605)),
    (0, 20, (0.0, 0.1611)),
    (1, 29, (0.0061, 0.1718)),
])
def test_wilson_published(k, n, expected):
    assert wilson(k, n) == pytest.approx(expected, abs=1e-4)


def test_wilson_matches_closed_form_and_brackets():
    rng = np.random.default_rng(0)
    z = sp.norm.ppf(0.975)
    for k, n in rng.integers(1, 500, size=(20, 2)):
        k = min(k, n)
        p = k / n
        # the Wilson bounds solve |p - x| = z * sqrt(x (1 - x) / n) for x
        for x in wilson(k, n):
            if 1e-9 < x < 1 - 1e-9:
                assert abs(p - x) == pytest.approx(z * np.sqrt(x * (1 - x) / n), rel=1e-9, abs=1e-12)
        lo, hi = wilson(k, n)
        assert lo <= p <= hi
    assert wilson(5, 0) == (0.0, 1.0)
    assert proportion(3, 4)["n"] == 4 and proportion(3, 4)["accuracy"] == 0.75


def test_newcombe_published():
    # Newcombe (1998), Table II, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339
    assert difference(56 / 70, 70, 48 / 80, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_t_interval_matches_scipy():
    x = [0.91, 0.95, 0.87, 0.99]
    mean, lo, hi = t_interval(x)
    assert (lo, hi) == pytest.approx(sp.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sp.sem(x)))
    assert t_interval([0.5]) == (0.5, 0.5, 0.5)


def test_bootstrap_ratio_deterministic_and_brackets():
    slow, fast = [300, 400, 250], [50, 80, 60]
    point, lo, hi = bootstrap_ratio(slow, fast)
    assert point == pytest.approx(np.exp(np.log(slow).mean() - np.log(fast).mean()))
    assert lo < point < hi and (point, lo, hi) == bootstrap_ratio(slow, fast)
    assert 250 / 80 <= lo and hi <= 400 / 50


def test_family_confidence():
    assert family_confidence(1) == 0.95 and family_confidence(5) == pytest.approx(0.99)


def test_paired_difference():
    from wrapcli.core.stats import paired_difference

    a = np.arange(400) % 3 == 0
    assert paired_difference(a, a) == (0.0, 0.0, 0.0)  # the same predictions differ by exactly 0
    rng = np.random.default_rng(0)
    x, y = rng.random(2000) < 0.8, rng.random(2000) < 0.7
    value, lo, hi = paired_difference(x, y)
    d = x.astype(float) - y
    half = sp.norm.ppf(0.975) * d.std(ddof=1) / np.sqrt(len(d))  # the normal approximation
    assert value == pytest.approx(d.mean()) and (lo, hi) == pytest.approx((value - half, value + half), abs=0.005)
