"""The third-party audit path on models whose built-in numbers are known: train a small
GPT-2 and Llama with wrapcli, export each as a Hugging Face directory (with a tokenizer for
the task vocabulary), write the built-in evaluation examples as prompt/answer text, and
run every --data command. Where both paths score the same examples, they must agree."""

import json

import pytest

from wrapcli.models import checkpoint

from cli import run
from models import as_records, built_in_archs, write_jsonl

TINY = ["--preset", "smoke", "--device", "cpu", "-q"]


@pytest.fixture(scope="module", params=built_in_archs())
def exported(request, tmp_path_factory):
    arch = request.param
    d = tmp_path_factory.mktemp(f"exported-{arch}")
    run("train", *TINY, "--arch", arch, "--steps", "40", "--batch-size", "32", "--eval-size", "16",
        "--prior", "a=0.9,b=0.1", "-o", d / "pt.safetensors")
    run("finetune", d / "pt.safetensors", *TINY, "--task", "count:b", "--lr", "large", "--steps", "10",
        "--eval-size", "16", "-o", d / "ft.safetensors")
    for name in ("pt", "ft"):
        run("export", d / f"{name}.safetensors", d / name)
    ck = checkpoint.load(d / "pt.safetensors")
    write_jsonl(d / "count_a.jsonl", as_records(ck, "count:a", 64))
    write_jsonl(d / "count_a_train.jsonl", as_records(ck, "count:a", 64, seed=5))
    labelled = [{"text": r["prompt"], "label": r["answer"].strip()} for r in as_records(ck, "count:a", 200, seed=7)]
    write_jsonl(d / "labels.jsonl", labelled)
    return d


def test_eval_agrees_with_the_built_in_path(exported):
    d = exported
    built_in = json.loads(run("eval", d / "ft.safetensors", "--task", "count:a", "--eval-size", "64", "--precision", "fp32",
                              "--device", "cpu", "-q", "--json").stdout)["results"]["tasks"]["count:a"]["natural"]
    text = json.loads(run("eval", d / "ft", "--data", d / "count_a.jsonl", "--device", "cpu", "-q",
                          "--json").stdout)["results"]["scores"]
    assert text["n_records"] == built_in["n"] == 64
    assert text["exact_match"] == text["token_accuracy"] == built_in["accuracy"]


def test_compare_agrees_with_the_built_in_path(exported):
    d = exported
    built_in = json.loads(run("compare", d / "pt.safetensors", d / "ft.safetensors", "--task", "count:a", "--eval-size", "64",
                              "--device", "cpu", "-q", "--json").stdout)["results"]["behaviour"]["count:a"]
    text = json.loads(run("compare", d / "pt", d / "ft", "--task", d / "count_a.jsonl", "--device", "cpu", "-q",
                          "--json").stdout)["results"]
    scores = text["behaviour"][str(d / "count_a.jsonl")]
    assert scores[str(d / "pt")]["accuracy"] == built_in[str(d / "pt.safetensors")]["accuracy"]
    assert scores[str(d / "ft")]["accuracy"] == built_in[str(d / "ft.safetensors")]["accuracy"]
    assert [r["position"] for r in text["depth"][str(d / "count_a.jsonl")][str(d / "ft")]] == [1]


def test_the_whole_audit_runs_through_data_files(exported):
    d = exported
    run("probe", d / "ft", "--data", d / "labels.jsonl", "--reference", d / "pt", "--device", "cpu", "-q",
        "-o", d / "probe.json")
    run("prune", d / "ft", "--data", d / "count_a.jsonl", "--k", "0,1,2", "--batch-size", "16", "--device", "cpu",
        "-q", "-o", d / "prune.json", "-w", d / "pruned", "--write-k", "2")
    assert (d / "pruned" / "tokenizer.json").is_file()  # an HF directory in, an HF directory out
    assert checkpoint.load(d / "pruned").lineage[-1]["kind"] == "prune"
    pruned = json.loads(run("eval", d / "pruned", "--data", d / "count_a.jsonl", "--device", "cpu", "-q",
                            "--json").stdout)["results"]["scores"]
    k2 = json.loads((d / "prune.json").read_text())["results"]["sweep"][-1]
    assert k2["k"] == 2 and pruned["token_accuracy"] == k2["results"]["data"]["token_accuracy"]
    run("finetune", d / "ft", "--data", d / "count_a_train.jsonl", "--eval-data", d / "count_a.jsonl", "--lr", "1e-3",
        "--steps", "4", "--batch-size", "8", "--device", "cpu", "-q", "-o", d / "ft2")
    run("revive", d / "ft", "--data", d / "count_a_train.jsonl", "--eval-data", d / "count_a.jsonl",
        "--reference", d / "pt", "--threshold", "0.5", "--control", d / "pt", "--lr", "1e-3", "--steps", "10",
        "--batch-size", "8", "--seeds", "3", "--device", "cpu", "-q", "-o", d / "revive.json")
    res = json.loads(run("compare", d / "pt", d / "ft", "--task", d / "count_a.jsonl",
                         "--reports", d / "probe.json", "--reports", d / "prune.json", "--reports", d / "revive.json",
                         "--device", "cpu", "-q", "--json").stdout)["results"]
    (v,) = res["verdicts"][str(d / "ft")]
    assert [c["kind"] for c in v["criteria"]] == ["behaviour", "probe", "prune", "revive"]
    probe = json.loads((d / "probe.json").read_text())["results"]
    assert probe["n"] == 200 and len(probe["layers"]) == 3 and "reference" in probe["layers"][0]


@pytest.mark.slow  # two minutes of the examples' Makefile: the slow tier (docs/testing.md)
def test_the_third_party_makefile_runs(exported, tmp_path):
    """examples/third-party.mk end to end on the exported models (base pt, tuned ft)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("needs make")
    d = exported
    root = Path(__file__).resolve().parents[2]
    cmd = ["make", "-f", str(root / "examples" / "third-party.mk"), f"WRAPCLI={sys.executable} -m wrapcli",
           f"BASE={d / 'pt'}", f"TUNED={d / 'ft'}", f"RECORDS={d / 'count_a.jsonl'}",
           f"RELEARN={d / 'count_a_train.jsonl'}", f"LABELS={d / 'labels.jsonl'}", f"CONTROL={d / 'pt'}",
           f"OUT={tmp_path / 'audit'}", "STEPS=5", "LR=1e-3", "PRUNE_K=0,1,2", "DEVICE=cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    audit = (tmp_path / "audit" / "audit.md").read_text()
    assert "## Verdicts" in audit and "| revive |" in audit and "How deep the change goes" in audit
    assert len((tmp_path / "audit" / "samples-tuned.jsonl").read_text().splitlines()) == 64
    # the battery target: the same audit's reports and every attack, weighed in one verdict
    # (these models' 57-token context holds no demonstrations: SHOTS= leaves that attack out)
    done = subprocess.run([*cmd, "battery", "SHOTS="], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    battery = json.loads((tmp_path / "audit" / "battery.json").read_text())["results"]
    (v,) = battery["verdicts"][str(d / "ft")]
    attacks = sorted(c["attack"].split(" (")[0] for c in v["criteria"] if c["kind"] == "attack")
    assert attacks == ["directional ablation", "quantization", "the logit lens"]


def test_the_world_target_plans_the_truth_study(tmp_path):
    """Dry run of `make -f examples/third-party.mk world`: facts, two trainings from scratch,
    the same unlearning of each, and the audit of each against the original with the LR
    grid and no control, multiple-choice records evaluated too (the run itself is
    tests/integration/test_facts_truth.py)."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("needs make")
    root = Path(__file__).resolve().parents[2]
    world = tmp_path / "w"
    cmd = ["make", "-n", "-f", str(root / "examples" / "third-party.mk"), f"WORLD={world}", "WRAPCLI=wrapcli", "world"]
    plan = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.replace("\\\n", " ")
    assert f"wrapcli facts {world}/data --seed 0" in plan
    trains = [l for l in plan.splitlines() if "wrapcli train --data" in l]
    assert len(trains) == 2 and any("pretrain-without.jsonl" in l for l in trains)
    assert plan.count("--data " + f"{world}/data/unlearn.jsonl") == 2
    # the audits run in sub-makes; their plans show each target's OUT
    assert f"OUT={world}/wrapped" in plan and f"OUT={world}/never-knew" in plan and "CONTROL= " in plan
    assert "LR=1e-4,1e-3,3e-3" in plan and f"MC={world}/data/heldout-mc.jsonl" in plan


def test_data_path_errors(exported, tmp_path):
    """Each names its problem in one line: a record without an answer, an empty file, a
    directory with no tokenizer, a control of another vocabulary, -w of the wrong kind."""
    from wrapcli.cli import app

    from cli import one_line_error, runner
    from models import tiny_hf

    d = exported
    write_jsonl(tmp_path / "noanswer.jsonl", [{"prompt": "<bos> <count>"}])
    (tmp_path / "empty.jsonl").write_text("")
    tiny_hf("gpt2").save_pretrained(tmp_path / "notok")
    tiny_hf("gpt2", vocab_size=120).save_pretrained(tmp_path / "othervocab")
    cases = [
        (["eval", d / "ft", "--data", tmp_path / "noanswer.jsonl"], "noanswer.jsonl:1: needs 'prompt' and 'answer'"),
        (["eval", d / "ft", "--data", tmp_path / "empty.jsonl"], "no records"),
        (["eval", tmp_path / "notok", "--data", d / "count_a.jsonl"], "no tokenizer files"),
        (["revive", d / "ft", "--data", d / "count_a_train.jsonl", "--eval-data", d / "count_a.jsonl",
          "--threshold", "0.5", "--control", tmp_path / "othervocab", "--lr", "1e-3", "--steps", "2"], "does not match"),
    ]
    for args, message in cases:
        one_line_error(runner.invoke(app, [str(a) for a in args] + ["--device", "cpu"]), message)
    for src, dest, message in ((d / "ft.safetensors", tmp_path / "p", "is pruned into"),
                               (d / "ft", tmp_path / "p.safetensors", "is pruned into"),
                               (d / "ft.safetensors", tmp_path / "p.bin", "the name says .bin")):
        res = runner.invoke(app, ["prune", str(src), "--task", "count:a", "--k", "0,1", "-w", str(dest), "--write-k", "1"])
        assert res.exit_code == 2 and message in res.stderr, res.stderr
