"""Models larger than one device: eval and compare with --device-map (accelerate's
big-model dispatch), forced on a CPU by a --max-memory budget smaller than the weights so
that layers go to disk, give the numbers of the undispatched model."""

import json

import pytest

from wrapcli.cli import app

from cli import one_line_error, run, runner
from models import PAIRS, make_model_dir, write_jsonl

pytest.importorskip("accelerate")
CPU = ["--device", "cpu", "-q", "--json"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dispatch")
    write_jsonl(d / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    for arch in ("llama", "gpt2"):
        make_model_dir(d / arch, arch)
    run("finetune", d / "llama", "--data", d / "pairs.jsonl", "--lr", "1e-2", "--steps", "10", "--batch-size", "4",
        "--device", "cpu", "-q", "-o", d / "llama-ft")
    return d


def budget(model_dir, share: float) -> str:
    """A CPU budget of ``share`` of the weight file, so that the rest goes to disk."""
    size = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    return f"cpu={int(size * share)}B"


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("share", [0.2, 0.7])
def test_eval_dispatched_to_disk_gives_the_same_scores(dirs, arch, share):
    plain = json.loads(run("eval", dirs / arch, "--data", dirs / "pairs.jsonl", *CPU).stdout)["results"]
    dispatched = json.loads(run("eval", dirs / arch, "--data", dirs / "pairs.jsonl", *CPU, "--device-map", "auto",
                                "--max-memory", budget(dirs / arch, share)).stdout)["results"]
    assert "disk" in dispatched["placement"]["modules"], dispatched["placement"]
    assert dispatched["scores"]["loss"] == pytest.approx(plain["scores"]["loss"], abs=1e-6)
    assert dispatched["scores"]["accuracy"] == plain["scores"]["accuracy"]
    assert "placement" not in plain


def test_compare_dispatched_gives_the_same_numbers(dirs):
    args = [dirs / "llama", dirs / "llama-ft", "--task", dirs / "pairs.jsonl", *CPU]
    plain = json.loads(run("compare", *args).stdout)["results"]
    dispatched = json.loads(run("compare", *args, "--device-map", "auto", "--max-memory",
                                budget(dirs / "llama", 0.5)).stdout)["results"]
    assert "disk" in dispatched["placement"]["modules"]
    key = str(dirs / "pairs.jsonl")
    for name, b in plain["behaviour"][key].items():
        assert dispatched["behaviour"][key][name]["accuracy"] == b["accuracy"]
    for a, b in zip(dispatched["depth"][key][str(dirs / "llama-ft")], plain["depth"][key][str(dirs / "llama-ft")]):
        assert a["kl"] == pytest.approx(b["kl"], abs=1e-5)
    for a, b in zip(dispatched["representations"][str(dirs / "llama-ft")], plain["representations"][str(dirs / "llama-ft")]):
        assert a["cka"] == pytest.approx(b["cka"], abs=1e-5)
    assert [v["label"] for v in dispatched["verdicts"][str(dirs / "llama-ft")]] == \
        [v["label"] for v in plain["verdicts"][str(dirs / "llama-ft")]]


@pytest.mark.parametrize("args, message", [
    (["--max-memory", "cpu=1GiB"], "--max-memory goes with --device-map"),
    (["--device-map", "auto", "--max-memory", "cpu:1GiB"], "is not DEVICE=SIZE"),
    (["--device-map", "auto", "--max-memory", "gpu=1GiB"], "is not DEVICE=SIZE"),
    (["--device-map", "auto", "--max-memory", "cpu=1GiB,cpu=2GiB"], "cpu is given twice"),
    (["--device-map", "everywhere"], "--device-map"),
])
def test_bad_dispatch_options(dirs, args, message):
    one_line_error(runner.invoke(app, ["eval", str(dirs / "llama"), "--data", str(dirs / "pairs.jsonl"), "-q", *args]),
                   message, 2)


def test_a_wrapcli_file_is_not_dispatched(tmp_path):
    run("train", "--preset", "smoke", "--steps", "2", "--eval-size", "8", "--device", "cpu", "-q",
        "-o", tmp_path / "pt.safetensors")
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "pt.safetensors"), "--eval-size", "8", "-q", "--device-map",
                                       "auto"]), "dispatch is for Hugging Face directories", 2)


def test_without_accelerate_the_error_names_the_extra(dirs, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_accelerate(name, *a, **k):
        if name == "accelerate" or name.startswith("accelerate."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_accelerate)
    one_line_error(runner.invoke(app, ["eval", str(dirs / "llama"), "--data", str(dirs / "pairs.jsonl"), "-q",
                                       "--device-map", "auto"]), "pip install 'wrapcli[big]'")


def test_probe_dispatched_to_disk_reads_the_same_layers(dirs, tmp_path):
    rows = [{"text": f"once upon {w} maps to {w}", "label": int(i % 2)} for i, w in enumerate(["red", "blue"] * 20)]
    data = write_jsonl(tmp_path / "l.jsonl", rows)
    args = ["probe", dirs / "llama-ft", "--data", data, "--reference", dirs / "llama", "--random-inits", "2", *CPU]
    plain = json.loads(run(*args).stdout)["results"]
    dispatched = json.loads(run(*args, "--device-map", "auto", "--max-memory", budget(dirs / "llama", 0.3)).stdout)["results"]
    assert "disk" in dispatched["placement"]["modules"] and "placement" not in plain
    for a, b in zip(dispatched["layers"], plain["layers"]):
        assert a["accuracy"] == b["accuracy"] and a["reference"]["accuracy"] == b["reference"]["accuracy"]
        assert a["random_init"]["per_init"] == b["random_init"]["per_init"]
        assert a["margin"]["value"] == pytest.approx(b["margin"]["value"], abs=1e-9)
