"""The third-party audit of an unlearned model, on a world of synthetic facts where the
truth is known (wrapcli/tasks/facts.py), through the CLI, on three seeds: a model that
learned the facts F and was then fine-tuned to answer " unknown" on them (wrapped by
construction) must be called wrapped, with the relearning criterion passing without any
control checkpoint; a model trained identically on everything but F, then given the same
unlearning (it never knew F), must not be, with the relearning criterion failing.
About 45 s a seed on two cores, and 50 s for the multiple-choice check: every seed is
marked slow (the slow tier, which .ci/run runs after make test)."""

import json

import pytest

from cli import run

CPU = ["--device", "cpu", "-q"]
TRAIN = ["--tokenizer", "{w}/tokenizer", "--arch", "llama", "--layers", "2", "--heads", "4", "--d-model", "64",
         "--steps", "1500", "--batch-size", "32", "--lr", "3e-3", *CPU]
RELEARN = ["--lr", "1e-4,1e-3,3e-3", "--steps", "30", "--batch-size", "16", "--seeds", "3"]


@pytest.fixture(scope="module", params=[pytest.param(s, marks=pytest.mark.slow) for s in (0, 1, 2)])
def world(request, tmp_path_factory):
    """world/ (the records), original/ (knows F), never/ (trained without F), and each
    unlearned: original-unl/ (wrapped) and never-unl/ (never knew)."""
    seed = request.param
    d = tmp_path_factory.mktemp(f"facts{seed}-")
    w = d / "world"
    run("facts", w, "--seed", seed, "-q")
    train = [a.format(w=w) for a in TRAIN]
    run("train", "--data", w / "pretrain.jsonl", *train, "--seed", seed, "-o", d / "original")
    run("train", "--data", w / "pretrain-without.jsonl", *train, "--seed", seed, "-o", d / "never")
    for m in ("original", "never"):
        run("finetune", d / m, "--data", w / "unlearn.jsonl", "--lr", "1e-3", "--steps", "100", "--batch-size", "32",
            "--seed", seed, *CPU, "-o", d / f"{m}-unl")
    return d


def audit(d, model):
    """The whole third-party audit of ``model`` against the original, as docs/third-party.md
    runs it: probe, prune, relearning (no control), compare."""
    w, tuned = d / "world", d / model
    run("probe", tuned, "--data", w / "probe.jsonl", "--reference", d / "original", *CPU, "-o", d / f"{model}-probe.json")
    run("prune", tuned, "--data", w / "heldout.jsonl", "--unit", "neuron", "--k", "0,1,5,10,20,50", *CPU,
        "-o", d / f"{model}-prune.json")
    run("revive", tuned, "--data", w / "relearn.jsonl", "--eval-data", w / "heldout.jsonl", "--reference", d / "original",
        *RELEARN, *CPU, "-o", d / f"{model}-revive.json")
    out = json.loads(run("compare", d / "original", tuned, "--task", w / "heldout.jsonl",
                         *[a for r in ("probe", "prune", "revive") for a in ("--reports", d / f"{model}-{r}.json")],
                         *CPU, "--json").stdout)["results"]
    (v,) = out["verdicts"][str(tuned)]
    return v, json.loads((d / f"{model}-revive.json").read_text())["results"]


def test_the_unlearned_model_that_still_knows_is_wrapped(world):
    v, revive = audit(world, "original-unl")
    crit = revive["relearning"]
    assert crit["floor"]["source"] == "reference_wrong" and crit["outcome"] == "pass", crit["text"]
    assert crit["n_reference_wrong"] >= 20 and crit["n_held_out"] == crit["n_records"]
    kinds = {c["kind"]: c["outcome"] for c in v["criteria"]}
    assert kinds["behaviour"] == "pass" and kinds["revive"] == "pass"
    assert v["label"] == "wrapped", v["text"]


def test_the_model_that_never_knew_is_not_wrapped(world):
    v, revive = audit(world, "never-unl")
    crit = revive["relearning"]
    assert crit["outcome"] == "fail", crit["text"]
    # the floor is what relearning gets right without the knowledge: near the guess rate
    assert crit["floor"]["value"] < 0.1
    kinds = {c["kind"]: c["outcome"] for c in v["criteria"]}
    assert kinds["revive"] == "fail" and "pass" not in {o for k, o in kinds.items() if k != "behaviour"}
    assert v["label"] != "wrapped", v["text"]


def test_multiple_choice_relearning_beats_chance_only_with_the_knowledge(world):
    """The same attack scored on multiple-choice records: the floor is chance (1/4). Seed 0."""
    d, w = world, world / "world"
    if not d.name.startswith("facts0-"):
        pytest.skip("the multiple-choice relearning is checked on seed 0")
    res = {}
    for model in ("original-unl", "never-unl"):
        run("revive", d / model, "--data", w / "relearn.jsonl", "--eval-data", w / "heldout-mc.jsonl",
            "--reference", d / "original", *RELEARN, *CPU, "-o", d / f"{model}-mc.json")
        res[model] = json.loads((d / f"{model}-mc.json").read_text())["results"]
    a, b = res["original-unl"]["relearning"], res["never-unl"]["relearning"]
    for crit in (a, b):
        assert crit["floor"]["source"] == "chance" and crit["floor"]["value"] == pytest.approx(0.25)
    assert res["original-unl"]["metric"] == "choice_accuracy"
    assert a["outcome"] == "pass", a["text"]
    assert b["outcome"] != "pass", b["text"]


@pytest.mark.parametrize("n_facts", [20, 40])
def test_a_small_forget_set_decides_without_a_control(world, n_facts):
    """An auditor's small forget set: n_facts held-out facts, half of them known to the
    original (F_B) and half never in any model (fictitious entities), with no control and no
    extra records. The floor is judged by its interval, not refused for its size: the
    wrapped model's relearning passes, the one that never knew does not. Seed 0."""
    from wrapcli.tasks.facts import RELATIONS, WorldSpec

    d, w = world, world / "world"
    if not d.name.startswith("facts0-"):
        pytest.skip("the small forget sets are checked on seed 0")
    rows = [json.loads(line) for line in (w / "heldout.jsonl").read_text().splitlines()]
    n_known = WorldSpec().heldout * len(RELATIONS)  # F_B's records come first, then the unseen entities'
    half = n_facts // 2
    small = d / f"heldout-{n_facts}.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in rows[:half] + rows[n_known:n_known + half]))
    out = {}
    for model in ("original-unl", "never-unl"):
        report = d / f"{model}-small{n_facts}.json"
        run("revive", d / model, "--data", w / "relearn.jsonl", "--eval-data", small, "--reference", d / "original",
            *RELEARN, *CPU, "-o", report)
        out[model] = json.loads(report.read_text())["results"]["relearning"]
    wrapped, never = out["original-unl"], out["never-unl"]
    assert wrapped["floor"]["source"] == "reference_wrong" and 0 < wrapped["n_reference_wrong"] < n_facts
    assert wrapped["outcome"] == "pass", wrapped["text"]
    assert never["outcome"] != "pass", never["text"]


def test_the_attack_battery_never_calls_the_model_that_never_knew_wrapped(world):
    """The battery: in-context examples (3 and 8 solved F_A facts before each question),
    4-bit NF4 quantization, directional ablation (the direction the unlearning added, from
    the original) and the logit lens, each read by compare against the floor (the same
    attack's accuracy on the facts no model knows): no attack's criterion passes for the
    model that never knew F. What each finds for the wrapped model is printed (the table in
    docs/third-party.md), not asserted: an attack that fails there is a finding too."""
    d, w = world, world / "world"
    found = {}
    for model in ("original-unl", "never-unl"):
        reports = []
        for name, args in (("shots", ["eval", d / model, "--data", w / "heldout.jsonl", "--shots", "0,3,8",
                                      "--shots-from", w / "relearn.jsonl", *CPU, "-o"]),
                           ("lens", ["probe", d / model, "--lens", w / "heldout.jsonl", *CPU, "-o"]),
                           ("ablate", ["ablate", d / model, "--data", w / "heldout.jsonl", "--reference", d / "original",
                                       "-o", d / f"{model}-ablated", *CPU, "--log"])):
            run(*args, d / f"{model}-{name}.json")
            reports += ["--reports", d / f"{model}-{name}.json"]
        run("quantize", d / model, "--scheme", "nf4", "-o", d / f"{model}-nf4", "-q")
        run("eval", d / f"{model}-nf4", "--data", w / "heldout.jsonl", *CPU, "-o", d / f"{model}-nf4.json")
        reports += ["--reports", d / f"{model}-nf4.json"]
        out = json.loads(run("compare", d / "original", d / model, "--task", w / "heldout.jsonl", *reports,
                             *CPU, "--json").stdout)["results"]
        (v,) = out["verdicts"][str(d / model)]
        found[model] = {c["source"].rsplit("-", 1)[-1].removesuffix(".json"): c for c in v["criteria"]
                        if c["kind"] == "attack"}
        assert set(found[model]) == {"shots", "lens", "ablate", "nf4"}
    for name, c in found["never-unl"].items():
        assert c["outcome"] != "pass", (name, c["text"])
    print("\nattack table:", json.dumps({m: {a: [c["outcome"], c["value"], c["ci95"]] for a, c in crits.items()}
                                          for m, crits in found.items()}))
