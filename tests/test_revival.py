"""Revival arithmetic against hand-made curves."""

import pytest

from wrapcli.errors import WrapError
from wrapcli.revival import default_lr, default_threshold, log_grid, speedup, steps_to_threshold
from wrapcli.training import mixed

STEPS = [0, 10, 30, 100, 300, 400]


def test_log_grid():
    assert log_grid(400) == STEPS
    assert log_grid(10_000) == [0, 10, 30, 100, 300, 1000, 3000, 10_000]
    assert log_grid(5) == [0, 5]


def test_steps_to_threshold_hand_curve():
    curve = [0.1, 0.5, 0.89, 0.9, 0.95, 0.99]
    assert steps_to_threshold(STEPS, curve, 0.9) == 100
    assert steps_to_threshold(STEPS, curve, 0.89) == 30
    assert steps_to_threshold(STEPS, curve, 0.999) is None
    assert steps_to_threshold(STEPS, curve, 0.05) == 0


def test_speedup_and_verdicts():
    s = speedup(30, {"scratch": 300, "control:x": 100}, 400)
    assert s["value"] == pytest.approx(100 / 30) and s["best_control"] == "control:x"
    assert "3.3x faster" in s["verdict"] and not s["lower_bound"]
    s = speedup(30, {"scratch": None}, 400)
    assert s["lower_bound"] and s["value"] == pytest.approx(400 / 30) and "at least" in s["verdict"]
    assert "no faster" in speedup(300, {"scratch": 100}, 400)["verdict"]
    assert speedup(None, {"scratch": 100}, 400)["value"] is None
    assert "already" in speedup(0, {"scratch": 100}, 400)["verdict"]


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
