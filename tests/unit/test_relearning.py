"""The relearning criterion (wrapcli/analyses/relearning.py): which records count, which floor,
the best LR under Bonferroni, and when it can pass, fail or not decide."""

import pytest

from wrapcli.analyses.relearning import MIN_FLOOR_RECORDS, criterion, held_out, lr_grid
from wrapcli.core.stats import difference, family_confidence, wilson

N = 200


def crit(**kw):
    base = dict(lrs=[1e-5], revived=[[0.0] * N], controls=None, eligible=[True] * N,
                reference_correct=[True] * (N // 2) + [False] * (N // 2), chance=None, start=[False] * N)
    return criterion(**{**base, **kw})


def test_reference_wrong_floor_counts_only_held_out_known_records():
    # known half relearned 90% of the way, unknown half at 2%: pass, floor from the unknown half
    revived = [1.0 if i % 10 else 0.0 for i in range(N // 2)] + [1.0 if i % 50 == 0 else 0.0 for i in range(N // 2)]
    c = crit(revived=[revived])
    assert c["floor"] == {"source": "reference_wrong", "value": 0.02, "n": 100} and c["n_known"] == 100
    assert c["value"] == pytest.approx(0.9 - 0.02)
    lo, hi = difference(0.9, 100, 0.02, 100, family_confidence(1))
    assert c["ci95"] == pytest.approx([lo, hi]) and c["outcome"] == "pass"


def test_records_in_the_training_data_do_not_count():
    c = crit(eligible=[False] * N)
    assert c["outcome"] == "unclear" and c["n_held_out"] == 0 and "not in --data" in c["settle"]


def test_free_form_without_reference_or_control_cannot_decide():
    c = crit(reference_correct=None)
    assert c["outcome"] == "unclear" and "--reference" in c["settle"]


def test_too_few_unknown_records_for_the_floor():
    ref = [True] * (N - MIN_FLOOR_RECORDS + 1) + [False] * (MIN_FLOOR_RECORDS - 1)
    c = crit(reference_correct=ref)
    assert c["outcome"] == "unclear" and f"needs {MIN_FLOOR_RECORDS}" in c["text"]


def test_chance_floor_for_multiple_choice_and_a_fail():
    revived = [1.0 if i % 4 == 0 else 0.0 for i in range(N)]  # exactly chance
    c = crit(revived=[revived], chance=[0.25] * N, reference_correct=None)
    assert c["floor"]["source"] == "chance" and c["value"] == pytest.approx(0.0)
    lo, hi = wilson(0.25 * N, N, family_confidence(1))
    assert c["ci95"] == pytest.approx([lo - 0.25, hi - 0.25]) and c["outcome"] == "unclear"  # MC rarely fails


def test_control_floor_and_the_best_lr_under_bonferroni():
    good = [1.0] * N
    c = crit(lrs=[1e-6, 1e-5, 1e-4], revived=[[0.0] * N, good, [0.5] * N], controls=[[0.0] * N] * 3)
    assert c["floor"]["source"] == "control" and c["best_lr"] == 1e-5 and c["confidence"] == pytest.approx(1 - 0.05 / 3)
    assert c["outcome"] == "pass"
    # fail needs every LR's upper bound at or below the margin
    nothing = crit(lrs=[1e-6, 1e-5], revived=[[0.0] * N] * 2, controls=[[0.0] * N] * 2)
    assert nothing["outcome"] == "fail" and nothing["ci95"][1] <= 0.05


def test_held_out_and_the_default_grid():
    assert held_out(["a", "b"], ["b", "c"]) == [False, True]
    assert lr_grid([])[0] == [1e-6, 1e-5, 1e-4]
    assert lr_grid([{"kind": "train", "lr": 1e-3}, {"kind": "finetune", "lr": 2e-4}])[0] == pytest.approx([2e-5, 2e-4])
