"""Revival arithmetic against hand-made curves."""

import pytest

from wrapcli.analyses.revival import default_lr, default_threshold, eval_grid, speedup, steps_to_threshold
from wrapcli.core.errors import WrapError
from wrapcli.training.batches import mixed

STEPS = [0, 10, 30, 100, 300, 400]


def test_eval_grid_resolves_a_factor_of_two():
    assert eval_grid(400) == [0, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200, 300, 400]
    assert eval_grid(5) == [0, 5]
    for steps in (37, 400, 10_000):
        grid = eval_grid(steps)
        assert grid[0] == 0 and grid[-1] == steps and grid == sorted(set(grid))
        assert max(b / a for a, b in zip(grid[1:], grid[2:])) <= 1.5


def test_steps_to_threshold_interpolates_in_log_steps():
    curve = [0.1, 0.5, 0.89, 0.9, 0.95, 0.99]
    assert steps_to_threshold(STEPS, curve, 0.9) == pytest.approx(100)
    assert steps_to_threshold(STEPS, curve, 0.3) == pytest.approx(5)  # halfway from step 0 to 10, linearly
    # between 10 (0.5) and 30 (0.89): the fraction 0.2 / 0.39 of the way in log(step)
    assert steps_to_threshold(STEPS, curve, 0.7) == pytest.approx(10 * 3 ** (0.2 / 0.39))
    assert steps_to_threshold(STEPS, curve, 0.999) is None
    assert steps_to_threshold(STEPS, curve, 0.05) == 0


def test_speedup_over_seeds():
    s = speedup([30, 30, 30], {"scratch": [300, 300, 300], "control:x": [100, 100, 100]}, 400)
    assert s["value"] == pytest.approx(100 / 30) and s["best_control"] == "control:x"
    assert s["ci95"] == pytest.approx([100 / 30, 100 / 30]) and not s["lower_bound"]
    assert s["controls"]["scratch"]["value"] == pytest.approx(10)
    s = speedup([20, 30, 45], {"scratch": [None, None, None]}, 400)
    assert s["lower_bound"] and s["value"] == pytest.approx(400 / 30) and "at least" in s["verdict"]
    lo, hi = s["ci95"]
    assert 400 / 45 - 1e-9 <= lo < s["value"] < hi <= 400 / 20 + 1e-9  # bootstrap over the revived seeds
    noisy = speedup([50, 300, 100], {"scratch": [60, 250, 120]}, 400)
    assert noisy["ci95"][0] < 1 < noisy["ci95"][1]
    assert "too few seeds" in speedup([30], {"scratch": [300]}, 400)["verdict"]
    assert speedup([None, 30, 30], {"scratch": [100] * 3}, 400)["value"] is None
    assert "already" in speedup([0, 10, 10], {"scratch": [100] * 3}, 400)["verdict"]


def test_defaults_from_lineage():
    lineage = [
        {"kind": "train", "accuracy": {"count:a": 0.98}, "lr": 1e-3},
        {"kind": "finetune", "lr": 2.5e-4, "lr_preset": "medium"},
    ]
    thr, why = default_threshold(lineage, "count:a")
    assert thr == pytest.approx(0.882) and "0.980" in why
    assert default_threshold(lineage, "count:c")[0] == 0.9
    assert default_lr(lineage)[0] == pytest.approx(2.5e-5)
    with pytest.raises(WrapError, match="--lr"):
        default_lr(lineage[:1])


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.1, 0.25, 0.5, 0.9])
def test_mix_fraction_exact(fraction):
    for n in (10, 96, 1000):
        assert sum(mixed(s, fraction) for s in range(n)) == int(n * fraction + 1e-9)
