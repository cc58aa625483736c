"""The relearning criterion (wrapcli/analyses/relearning.py): which records count, which floor,
the best LR under Bonferroni, and when it can pass, fail or not decide."""

import pytest

from wrapcli.analyses.relearning import LORA_GRID, TRAINED_DROP, criterion, held_out, lr_grid
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


def test_no_unknown_record_no_floor():
    c = crit(reference_correct=[True] * N)
    assert c["outcome"] == "unclear" and "no floor" in c["text"] and "--control" in c["settle"]


def the_auditors_set(n_known, n_unknown, known_right, unknown_right):
    """A forget set of n_known + n_unknown facts (about half unknown to the original), the
    known ones relearned to ``known_right`` of them and the unknown ones to ``unknown_right``."""
    revived = [1.0] * known_right + [0.0] * (n_known - known_right) + [1.0] * unknown_right + [0.0] * (n_unknown - unknown_right)
    n = n_known + n_unknown
    return dict(revived=[revived], eligible=[True] * n, reference_correct=[True] * n_known + [False] * n_unknown,
                start=[False] * n)


def test_a_small_floor_decides_by_its_interval():
    """An auditor's forget set of 40 capitals, 22 known to the original: 20 of the 22 come
    back, none of the 18 unknown ones. The floor's interval (0 of 18, Wilson's upper bound
    near 18%) is narrow enough: the criterion passes without a control or more records."""
    c = crit(**the_auditors_set(22, 18, 20, 0))
    lo, hi = difference(20 / 22, 22, 0.0, 18, family_confidence(1))
    assert c["floor"] == {"source": "reference_wrong", "value": 0.0, "n": 18}
    assert c["outcome"] == "pass" and c["ci95"][0] == pytest.approx(lo)


def test_a_floor_of_few_records_is_unclear_by_its_width():
    """Three unknown records, one of them guessed: the floor's interval is wide, so a
    modest recovery is unclear with the advice to add such records, not refused by a count."""
    c = crit(**the_auditors_set(20, 3, 8, 1))
    assert c["outcome"] == "unclear" and c["floor"]["n"] == 3 and "narrow its interval" in c["settle"]
    lo, hi = difference(8 / 20, 20, 1 / 3, 3, family_confidence(1))
    assert c["ci95"] == pytest.approx([lo, hi]) and hi - lo > 0.6


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


def test_an_attack_that_did_not_train_is_unclear_not_a_fail():
    """The same nothing-came-back curves: with the loss on the relearning records unmoved
    (a fall under TRAINED_DROP) the outcome is unclear, 'did not train'; with the loss
    falling it is a fail. An LR that did not train cannot make the outcome fail."""
    args = dict(lrs=[1e-6, 1e-5], revived=[[0.0] * N] * 2, controls=[[0.0] * N] * 2)
    still = [(2.0, 2.0 * (1 - TRAINED_DROP / 2))] * 2
    c = crit(**args, relearn_loss=still)
    assert c["outcome"] == "unclear" and c["text"].startswith("the attack did not train") and c["trained"] is False
    assert [row["trained"] for row in c["per_lr"]] == [False, False] and "--lr" in c["settle"]
    moved = crit(**args, relearn_loss=[(2.0, 2.0 * (1 - TRAINED_DROP / 2)), (2.0, 1.0)])
    assert moved["outcome"] == "fail" and moved["trained"] is True
    assert [row["trained"] for row in moved["per_lr"]] == [False, True]
    assert moved["relearn_loss"][1] == [2.0, 1.0]
    assert crit(**args)["trained"] is None and crit(**args)["outcome"] == "fail"  # not measured: as before


def test_held_out_and_the_default_grid():
    assert held_out(["a", "b"], ["b", "c"]) == [False, True]
    assert lr_grid([])[0] == [1e-6, 1e-5, 1e-4]
    assert lr_grid([{"kind": "train", "lr": 1e-3}, {"kind": "finetune", "lr": 2e-4}])[0] == pytest.approx([2e-5, 2e-4])
    # LoRA adapters: their own grid, whatever the lineage's full-parameter LR
    grid, why = lr_grid([{"kind": "finetune", "lr": 1e-5}], lora=True)
    assert grid == list(LORA_GRID) == [1e-5, 1e-4, 1e-3] and "LoRA" in why
