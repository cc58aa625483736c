"""The decision rules (wrapcli/verdicts/rules.py) on hand-made evidence whose answer is known."""

import pytest

from wrapcli.core.errors import WrapError
from wrapcli.verdicts import rules as verdicts
from wrapcli.verdicts.rules import Thresholds

TH = Thresholds()
BASE = {"accuracy": 0.99, "n": 500}
FELL = {"accuracy": 0.30, "n": 500}


def probe_results(acc, random_init, n=500, layers=4, agree=0.8, majority=0.35):
    """Probe rows as wrapcli.analyses.probing makes them, from hand-made per-example hits: the probe
    right on ``acc`` of ``n`` rows, the random init on ``random_init``, overlapping as
    much as ``agree`` allows."""
    import numpy as np

    from wrapcli.core.stats import family_confidence, paired_difference

    hits = np.arange(n) < round(acc * n)
    rand = np.zeros(n, bool)
    shared = round(min(acc, random_init) * n * agree)
    rand[:shared] = True
    rand[n - (round(random_init * n) - shared):] = True
    value, lo, hi = paired_difference(hits, rand)
    _, flo, fhi = paired_difference(hits, rand, family_confidence(layers))
    row = {"layer": 0, "hook": "blocks.0.hook_resid_post", "accuracy": hits.mean(), "n": n,
           "majority_baseline": majority, "random_init": {"accuracy": rand.mean(), "n": n},
           "margin": {"baseline": "random_init", "value": value, "ci95": [lo, hi], "ci_bonferroni": [flo, fhi],
                      "confidence_bonferroni": family_confidence(layers)}}
    return {"layers": [row] * layers, "random_init_seeds": [1, 2, 3]}


def prune_results(accs, majority=0.35, n=500):
    sweep = [{"k": k, "results": {"count:a": {"natural": {"accuracy": a, "n": n, "majority_baseline": majority}}}}
             for k, a in accs]
    return {"unit": "head", "sweep": sweep}


def revive_results(revived, control, steps=400):
    from wrapcli.analyses.revival import speedup

    models = [{"name": "revived", "steps_to_threshold": {"per_seed": revived}},
              {"name": "scratch", "steps_to_threshold": {"per_seed": control}}]
    return {"models": models, "speedup": speedup(revived, {"scratch": control}, steps)}


@pytest.mark.parametrize("acc, random_init, outcome", [
    (0.97, 0.80, "pass"),    # well above the best random init
    (0.78, 0.80, "fail"),    # no better than an untrained network, though far above the majority
    (0.86, 0.80, "unclear"),  # above, but not by margin + noise at n = 500 (Bonferroni over 4 layers)
])
def test_probe_against_random_init(acc, random_init, outcome):
    assert verdicts.probe(probe_results(acc, random_init), TH, "p.json")["outcome"] == outcome


def test_probe_takes_the_most_favourable_layer():
    """Layers differ: the criterion is the layer whose Bonferroni lower bound is highest,
    wherever it sits, and its text names that layer."""
    rows = []
    for layer, acc in enumerate([0.78, 0.79, 0.97, 0.80]):
        row = dict(probe_results(acc, 0.80)["layers"][0], layer=layer, hook=f"blocks.{layer}.hook_resid_post")
        rows.append(row)
    c = verdicts.probe({"layers": rows, "random_init_seeds": [1, 2, 3]}, TH, "p.json")
    assert c["outcome"] == "pass" and "blocks.2.hook_resid_post" in c["text"]
    rows = [dict(probe_results(acc, 0.80)["layers"][0], layer=layer, hook=f"blocks.{layer}.hook_resid_post")
            for layer, acc in enumerate([0.70, 0.72, 0.74, 0.71])]
    c = verdicts.probe({"layers": rows, "random_init_seeds": [1, 2, 3]}, TH, "p.json")
    assert c["outcome"] == "fail"


def test_probe_small_held_out_set_is_unclear():
    assert verdicts.probe(probe_results(0.97, 0.80, n=30), TH, "p.json")["outcome"] == "unclear"


@pytest.mark.parametrize("accs, outcome", [
    ([(0, 0.30), (5, 0.60)], "pass"),
    ([(0, 0.19), (3, 0.34)], "fail"),   # climbing to the majority baseline is not a restoration
    ([(0, 0.36), (2, 0.34)], "fail"),
    ([(0, 0.33), (2, 0.37)], "unclear"),
])
def test_prune_against_unpruned_and_majority(accs, outcome):
    c = verdicts.prune(prune_results(accs), "count:a", 0.99, TH, "q.json")
    assert c["outcome"] == outcome


def test_prune_recovered_fraction():
    c = verdicts.prune(prune_results([(0, 0.30), (5, 0.60)]), "count:a", 0.90, TH, "q.json")
    assert c["recovered_fraction"]["value"] == pytest.approx(0.5)
    lo, hi = c["recovered_fraction"]["ci95"]
    assert lo < 0.5 < hi
    with pytest.raises(WrapError, match="K=0"):
        verdicts.prune(prune_results([(2, 0.5)]), "count:a", 0.9, TH, "q.json")


@pytest.mark.parametrize("revived, control, outcome", [
    ([40, 50, 60], [300, 350, 400], "pass"),
    ([40, 50, 60], [None, None, None], "pass"),    # scratch never got there: a lower bound, still > 1
    ([300, 320, 310], [100, 120, 90], "fail"),
    ([50, 300, 100], [60, 250, 120], "unclear"),
    ([40], [300], "unclear"),                      # one seed
    ([None, None, None], [100, 100, 100], "fail"),  # never revived while the control learnt
    ([None, None, None], [None, None, None], "unclear"),
])
def test_revive_speedup(revived, control, outcome):
    assert verdicts.revive(revive_results(revived, control), TH, "r.json")["outcome"] == outcome


def test_labels():
    p = lambda out: {"kind": "probe", "outcome": out, "text": "", "settle": "more"}  # noqa: E731
    v = lambda ev, tuned=FELL: verdicts.verdict("count:a", BASE, tuned, ev, TH)["label"]  # noqa: E731
    assert v([], {"accuracy": 0.98, "n": 500}) == "intact"
    assert v([]) == "suppressed"
    assert v([p("pass")]) == "wrapped"
    assert v([p("pass"), p("unclear")]) == "wrapped"
    assert v([p("fail"), p("fail")]) == "removed"
    assert v([p("pass"), p("fail")]) == "inconclusive"
    assert v([p("fail"), p("unclear")]) == "inconclusive"
    # a failing prune shows the change is not localised, not that the capability is gone
    q = lambda out: {"kind": "prune", "outcome": out, "text": "", "settle": "more"}  # noqa: E731
    r = lambda out: {"kind": "revive", "outcome": out, "text": "", "settle": "more"}  # noqa: E731
    full = lambda ev: verdicts.verdict("count:a", BASE, FELL, ev, TH)  # noqa: E731
    assert full([p("pass"), r("pass"), q("fail")])["label"] == "wrapped"
    assert full([p("pass"), r("pass"), q("fail")])["localised"] is False
    assert full([p("pass"), q("pass")])["localised"] is True and full([p("pass")])["localised"] is None
    assert v([p("fail"), r("fail"), q("fail")]) == "removed"
    assert v([p("fail"), r("fail"), q("unclear")]) == "removed"  # an unclear prune cannot show absence either
    assert v([p("fail"), r("fail"), q("pass")]) == "inconclusive"  # a passing prune contradicts removal
    assert v([q("fail")]) == "inconclusive" and v([q("pass")]) == "wrapped"
    assert v([p("unclear"), q("fail")]) == "inconclusive"
    assert v([p("pass")], {"accuracy": 0.80, "n": 30}) == "inconclusive"  # the fall itself is unclear
    out = verdicts.verdict("count:a", BASE, FELL, [p("unclear")], TH)
    assert out["settle"] == ["more"] and out["criteria"][0]["kind"] == "behaviour"


@pytest.mark.parametrize("right, n, chance, outcome", [
    (21, 40, 0.25, "pass"),     # 52.5% of 40 on four choices: Wilson's lower bound 37.5% clears 25% + 5 points
    (10, 40, 0.25, "unclear"),  # at chance, but 40 records cannot show it within 5 points (upper bound 40%)
    (400, 1600, 0.25, "fail"),  # at chance on many records: the upper bound 27.2% is under 30%
    (13, 40, 0.25, "unclear"),
])
def test_the_multiple_choice_view_against_chance(right, n, chance, outcome):
    """The issue's model: the free-form capitals fell to 0%, and four-way multiple choice of
    the same capitals still picks the right city 52.5% of the time. Checked against Wilson's
    interval computed here by hand."""
    import math

    c = verdicts.view({"accuracy": right / n, "n": n, "majority_baseline": chance}, TH, "mc.jsonl")
    p, z = right / n, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert c["ci95"] == pytest.approx([centre - half - chance, centre + half - chance])
    assert c["kind"] == "view" and c["outcome"] == outcome and c["value"] == pytest.approx(p - chance)


def test_a_view_that_shows_the_knowledge_makes_the_fall_wrapped():
    """A passing multiple-choice view is positive evidence; a failing one shows only that
    the format hides it too, and neither contradicts other evidence nor counts towards
    removal."""
    view = lambda out: {"kind": "view", "outcome": out, "text": "", "settle": None}  # noqa: E731
    p = lambda out: {"kind": "probe", "outcome": out, "text": "", "settle": "more"}  # noqa: E731
    v = lambda ev: verdicts.verdict("capitals.jsonl", BASE, FELL, ev, TH)  # noqa: E731
    assert v([view("pass")])["label"] == "wrapped"
    assert v([view("fail")])["label"] == "suppressed" and "multiple-choice view" in v([view("fail")])["reason"]
    assert v([view("fail"), p("pass")])["label"] == "wrapped"
    assert v([view("fail"), p("fail")])["label"] == "removed"
    assert v([view("pass"), p("fail")])["label"] == "inconclusive"


def test_thresholds_validated():
    for bad in ({"drop": 0}, {"probe_margin": -0.1}, {"revive_speedup": 0.5}, {"min_seeds": 1}, {"view_margin": 1.0}):
        with pytest.raises(WrapError):
            Thresholds(**bad)
