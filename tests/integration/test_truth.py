"""compare's verdicts end to end, through the CLI, on models whose truth is known by
construction (tests/truth.py): a counter wrapped by four hand-set neurons must be called
wrapped, with pruning finding those neurons; a counter whose blocks were destroyed must
not; too few seeds or examples must leave the verdict inconclusive. About two minutes."""

import json

import pytest

import truth
from cli import run

CPU = ["--device", "cpu", "--precision", "fp32", "-q"]
REVIVE = ["revive", "--task", "count:a", "--scratch", "--lr", "1e-3", "--steps", "50", "--batch-size", "64",
          "--eval-size", "200", "--preset", "smoke", *CPU]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """pt (counts a at ~99% within 250 steps: texts of 24, window 16), wrapped, destroyed."""
    from wrapcli.models import checkpoint
    from wrapcli.tasks.checks import task_for
    from wrapcli.tasks.sequences import eval_batch

    d = tmp_path_factory.mktemp("truth")
    run("train", "--preset", "smoke", "--task", "count:a", "--prior", "a=1", "--text-len", "24", "--window", "16",
        "--layers", "2", "--heads", "2", "--d-model", "64", "--steps", "250", "--batch-size", "64", "--lr", "3e-3",
        "--eval-every", "250", "--eval-size", "500", *CPU, "-o", d / "pt.safetensors")
    ck = checkpoint.load(d / "pt.safetensors")
    spec = task_for(ck, "count:a")
    batch = eval_batch(spec, spec.eval_components()[0], 256, None)
    truth.wrap(d / "pt.safetensors", d / "wrapped.safetensors", batch.tokens[:, : batch.answer_pos + 1])
    truth.destroy(d / "pt.safetensors", d / "destroyed.safetensors")
    return d


def evidence(d, name, seeds=3, probe_n=1000):
    ckpt = d / f"{name}.safetensors"
    run("probe", ckpt, "--target", "count:a", "--eval-size", probe_n, "--no-attention", *CPU[:2], "-q",
        "-o", d / f"probe-{name}-{probe_n}.json")
    run("prune", ckpt, "--task", "count:a", "--unit", "neuron", "--k", "0,1,2,4,8", "--eval-size", "1000",
        "--batch-size", "256", *CPU, "-o", d / f"prune-{name}.json")
    run(REVIVE[0], ckpt, *REVIVE[1:], "--seeds", seeds, "-o", d / f"revive-{name}-{seeds}.json")
    return [d / f"probe-{name}-{probe_n}.json", d / f"prune-{name}.json", d / f"revive-{name}-{seeds}.json"]


def compare(d, name, reports, n=500):
    args = ["compare", d / "pt.safetensors", d / f"{name}.safetensors", "--task", "count:a", "--eval-size", n, "--device", "cpu"]
    for r in reports:
        args += ["--reports", r]
    res = json.loads(run(*args, "-q", "--json").stdout)["results"]
    (v,) = res["verdicts"][str(d / f"{name}.safetensors")]
    return v, {c["kind"]: c for c in v["criteria"]}


def test_a_wrapped_counter_is_called_wrapped(models):
    v, c = compare(models, "wrapped", evidence(models, "wrapped"))
    assert v["label"] == "wrapped", v["text"]
    assert c["behaviour"]["outcome"] == "pass" and v["fine_tuned"]["accuracy"] < 0.2
    assert {c[k]["outcome"] for k in ("probe", "prune", "revive")} == {"pass"}, v["text"]
    assert c["prune"]["recovered_fraction"]["value"] > 0.8
    # pruning finds exactly the neurons the wrapper took over, first
    pruned = json.loads((models / "prune-wrapped.json").read_text())["results"]["pruned"]
    assert {(u["layer"], u["index"]) for u in pruned[: truth.K]} == {(1, i) for i in range(truth.K)}


def test_a_destroyed_counter_is_not_called_wrapped(models):
    reports = evidence(models, "destroyed")
    v, c = compare(models, "destroyed", reports)
    assert v["label"] in ("removed", "inconclusive"), v["text"]
    # nothing of the count is left: no criterion may find it (whether the probe's interval
    # lies wholly at or below the bar, "fail", or straddles it, "unclear", is a matter of power)
    outcomes = {c[k]["outcome"] for k in ("probe", "prune", "revive")}
    assert outcomes <= {"fail", "unclear"}, v["text"]
    assert "fail" in outcomes, v["text"]  # a rule that only ever says "unclear" must not pass this test
    assert c["probe"]["value"] < 0.05  # at most the bar above the best random init


def test_too_few_seeds_or_examples_is_inconclusive(models):
    one_seed = models / "revive-wrapped-1.json"
    run(REVIVE[0], models / "wrapped.safetensors", *REVIVE[1:], "--seeds", 1, "-o", one_seed)
    v, c = compare(models, "wrapped", [one_seed])
    assert v["label"] == "inconclusive" and c["revive"]["outcome"] == "unclear"
    assert any("--seeds 3" in s for s in v["settle"])
    few = models / "probe-wrapped-24.json"
    run("probe", models / "wrapped.safetensors", "--target", "count:a", "--eval-size", 24, "--no-attention", "--device", "cpu",
        "-q", "-o", few)
    v, c = compare(models, "wrapped", [few])
    assert v["label"] == "inconclusive" and c["probe"]["outcome"] == "unclear", v["text"]
