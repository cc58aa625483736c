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


def test_paired_newcombe_gives_the_published_interval():
    """Newcombe's paired interval (1998b, method 10) on Cavo et al.'s table (complete
    response before / after consolidation therapy: 59 both, 6 before only, 16 after only,
    80 neither), as Fagerland, Lydersen and Laake's "Statistical Analysis of Contingency
    Tables" (2017, ch. 8) gives it: -0.0621 (95% CI -0.1186 to -0.0046)."""
    from wrapcli.core.stats import paired_newcombe

    before = [1] * 59 + [1] * 6 + [0] * 16 + [0] * 80
    after = [1] * 59 + [0] * 6 + [1] * 16 + [0] * 80
    value, lo, hi = paired_newcombe(before, after)
    assert (round(value, 4), round(lo, 4), round(hi, 4)) == (-0.0621, -0.1186, -0.0046)


def test_a_paired_interval_is_tighter_where_the_models_agree():
    """A fine-tune that changes 10 of 500 answers: the paired interval is a fraction of the
    independent one, and both hold the same difference."""
    from wrapcli.core.stats import difference, paired_newcombe

    base = [1] * 400 + [0] * 100
    tuned = [0] * 10 + [1] * 390 + [0] * 100
    value, lo, hi = paired_newcombe(base, tuned)
    ilo, ihi = difference(0.8, 500, 0.78, 500)
    assert value == pytest.approx(0.02) and lo < 0.02 < hi
    assert (hi - lo) < 0.4 * (ihi - ilo)


def test_paired_ratio_is_the_bootstrap_of_the_exact_resampling_distribution():
    """The recovered fraction's bootstrap against the exact distribution of the ratio over
    all 6^6 equally likely resamples of six records (enumerated here): the percentiles
    agree to the bootstrap's sampling error, and the point is the plain ratio."""
    import itertools

    import numpy as np

    from wrapcli.core.stats import paired_ratio

    after = np.array([1.0, 0.5, 1.0, 0.0, 1.0, 0.5])
    start = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    original = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    value, lo, hi = paired_ratio((after, start), (original, start))
    assert value == pytest.approx((after.mean() - start.mean()) / (original.mean() - start.mean()))
    ratios = []
    for idx in itertools.product(range(6), repeat=6):
        idx = list(idx)
        den = (original[idx] - start[idx]).mean()
        if den != 0:
            ratios.append((after[idx] - start[idx]).mean() / den)
    exact_lo, exact_hi = np.quantile(ratios, [0.025, 0.975])
    assert lo == pytest.approx(exact_lo, abs=0.06) and hi == pytest.approx(exact_hi, abs=0.06)


def test_the_behaviour_criterion_says_which_interval_it_used():
    from wrapcli.verdicts.rules import behaviour
    from wrapcli.verdicts.thresholds import Thresholds

    base = {"accuracy": 0.8, "n": 500, "correct": [True] * 400 + [False] * 100}
    tuned = {"accuracy": 0.5, "n": 500, "correct": [True] * 250 + [False] * 250}
    paired = behaviour(base, tuned, Thresholds())
    independent = behaviour({"accuracy": 0.8, "n": 500}, {"accuracy": 0.5, "n": 500}, Thresholds())
    assert paired["interval"] == "Newcombe paired" and independent["interval"] == "Newcombe independent"
    assert paired["ci95"][1] - paired["ci95"][0] < independent["ci95"][1] - independent["ci95"][0]
    assert paired["value"] == independent["value"] == pytest.approx(0.3)
