"""Every command on CUDA once: built-in checkpoints and Hugging Face directories, fp32 and
bf16, with the CPU as the independent computation (the same checkpoint scored on both
devices gives the same counts, up to a few argmax ties in bf16).

Skipped where CUDA is absent, which is everywhere CI runs. ``WRAPCLI_TEST_DEVICE=cpu``
runs the same tests on the CPU, so the test code itself is checked without a GPU
(benchmarks/gpu_check.sh runs them on a lent GPU)."""

import json
import os

import pytest
import torch

from cli import run
from models import PAIRS, archs, make_model_dir, write_jsonl

DEV = os.environ.get("WRAPCLI_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(DEV.startswith("cuda") and not torch.cuda.is_available(),
                                                    reason="needs CUDA (WRAPCLI_TEST_DEVICE=cpu runs it on the CPU)")]
ON = ["--device", DEV, "-q"]


def results(*args):
    return json.loads(run(*args, "--json").stdout)["results"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A smoke pretraining and a fine-tune, both trained on the device."""
    d = tmp_path_factory.mktemp("cuda")
    run("train", "--preset", "smoke", *ON, "--steps", "30", "--eval-size", "32", "--prior", "a=0.9,b=0.1",
        "-o", d / "pt.safetensors")
    run("finetune", d / "pt.safetensors", "--preset", "smoke", *ON, "--task", "count:b", "--lr", "large",
        "--steps", "10", "--eval-size", "32", "-o", d / "ft.safetensors")
    return d


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_and_eval_on_the_device_match_the_cpu(built, precision):
    pt = built / "pt.safetensors"
    on = results("eval", pt, "--task", "count:a", "--eval-size", "128", "--precision", precision, *ON)
    cpu = results("eval", pt, "--task", "count:a", "--eval-size", "128", "--precision", "fp32", "--device", "cpu", "-q")
    tolerance = 0 if precision == "fp32" else 4  # bf16: a few argmax ties may flip
    for split, b in cpu["tasks"]["count:a"].items():
        a = on["tasks"]["count:a"][split]
        assert a["n"] == b["n"] == 128
        assert abs(a["accuracy"] - b["accuracy"]) * 128 <= tolerance + 1e-9, (split, a, b)


def test_the_audit_commands_run_on_the_device(built, tmp_path):
    pt, ft = built / "pt.safetensors", built / "ft.safetensors"
    pr = results("prune", ft, "--task", "count:a", "--k", "0,1,3", "--eval-size", "32", *ON)
    rows = results("prune", ft, "--task", "count:a", "--unit", "row", "--revert-to", pt, "--k", "0,2",
                   "--eval-size", "32", *ON, "-w", tmp_path / "pruned.safetensors", "--write-k", "2")
    assert [r["k"] for r in pr["sweep"]] == [0, 1, 3] and rows["operation"] == "revert"
    # the device's saliency picks the same top unit as the CPU's (fp32 both)
    cpu = results("prune", ft, "--task", "count:a", "--k", "0,1", "--eval-size", "32",
                  "--precision", "fp32", "--device", "cpu", "-q")
    dev = results("prune", ft, "--task", "count:a", "--k", "0,1", "--eval-size", "32",
                  "--precision", "fp32", *ON)
    assert (dev["pruned"][0]["layer"], dev["pruned"][0]["index"]) == (cpu["pruned"][0]["layer"], cpu["pruned"][0]["index"])
    pb = results("probe", ft, "--target", "count:a", "--eval-size", "64", "--random-inits", "1", *ON)
    assert pb["layers"]
    rv = results("revive", ft, "--task", "count:a", "--scratch", "--control", pt, "--seeds", "2", "--steps", "6",
                 "--eval-size", "16", "--preset", "smoke", *ON)
    assert rv["seeds"] == [0, 1] and len(rv["models"]) >= 2
    cmp = results("compare", pt, ft, "--task", "count:a", *ON)
    assert cmp["behaviour"]
    run("export", ft, tmp_path / "hf", "-q")
    hf = results("eval", tmp_path / "hf", "--task", "count:a", "--eval-size", "64", "--precision", "fp32", *ON)
    native = results("eval", ft, "--task", "count:a", "--eval-size", "64", "--precision", "fp32", *ON)
    assert hf["tasks"]["count:a"] == native["tasks"]["count:a"]


@pytest.mark.parametrize("arch", archs())
def test_a_third_party_directory_on_the_device(arch, tmp_path):
    pytest.importorskip("peft")
    base = make_model_dir(tmp_path / "base", arch)
    recs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    ft = results("finetune", base, "--data", recs, "--lr", "1e-2", "--steps", "20", "--batch-size", "4", *ON,
                 "-o", tmp_path / "ft")
    assert ft["after"]["loss"] < ft["before"]["loss"]
    fp32 = results("eval", tmp_path / "ft", "--data", recs, "--precision", "fp32", *ON)
    bf16 = results("eval", tmp_path / "ft", "--data", recs, "--precision", "bf16", *ON)
    cpu = results("eval", tmp_path / "ft", "--data", recs, "--precision", "fp32", "--device", "cpu", "-q")
    assert fp32["scores"]["accuracy"] == cpu["scores"]["accuracy"]
    assert fp32["scores"]["loss"] == pytest.approx(cpu["scores"]["loss"], abs=1e-4)
    assert abs(bf16["scores"]["accuracy"] - cpu["scores"]["accuracy"]) <= 2 / len(PAIRS)
    assert bf16["scores"]["loss"] == pytest.approx(cpu["scores"]["loss"], abs=0.1)
    lora = results("revive", base, "--data", recs, "--eval-data", recs, "--threshold", "0.5", "--lora", "4",
                   "--lr", "1e-2", "--steps", "5", "--batch-size", "4", "--seeds", "2", *ON)
    assert lora["lora"]["rank"] == 4 and len(lora["models"][0]["accuracy"]["per_seed"]) == 2
    pr = results("prune", tmp_path / "ft", "--data", recs, "--k", "0,1,2", "--unit", "row", *ON)
    assert pr["sweep"][0]["results"]["data"]["accuracy"] == cpu["scores"]["accuracy"]
    cmp = results("compare", base, tmp_path / "ft", "--task", recs, *ON)
    assert cmp["behaviour"]
