"""Data-parallel training under torchrun: two gloo processes on CPU give the one-process
weights, rank 0 alone writes, and a run resumes from a one-process state file."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY
from wrapcli.core.distributed import World
from wrapcli.core.errors import WrapError

from cli import one_line_error, run

# fp32: bf16 rounding would differ between a batch of 8 and two slices of 4
RUN = ["--steps", "8", "--batch-size", "8", "--eval-size", "16", "--prior", "a=0.9,b=0.1", "--precision", "fp32"]


def test_torchrun_two_processes_give_the_one_process_weights_and_resume(tmp_path):
    from wrapcli.runs.train import pretrain
    from wrapcli.training import presets

    run("train", *TINY, *RUN, "-o", tmp_path / "one.safetensors")

    two = tmp_path / "two.safetensors"

    def stop_at_5(step, metrics):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # one process writes a state at step 4, then dies
        pretrain(out=two, task="count", preset=presets.get("smoke"), prior="a=0.9,b=0.1", steps=8,
                 batch_size=8, eval_size=16, save_every=4, device="cpu", precision="fp32", on_step=stop_at_5)
    assert (tmp_path / "two.safetensors.state").exists() and not two.exists()

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "wrapcli", "train", *TINY, *RUN, "--resume", "--log-file", str(tmp_path / "two.json"),
           "-o", str(two)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    one, parallel = load_file(tmp_path / "one.safetensors"), load_file(two)
    assert one.keys() == parallel.keys()
    for name in one:  # same weights up to the order of float sums
        torch.testing.assert_close(parallel[name], one[name], atol=1e-5, rtol=1e-4)
    assert not (tmp_path / "two.safetensors.state").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.safetensors", "two.json", "two.safetensors"]
    report = json.loads((tmp_path / "two.json").read_text())
    assert report["results"]["train"]["batch_size"] == 8  # the global batch
    assert report["results"]["log"][-1]["step"] == 8


def test_ranks_split_the_global_batch():
    rows = torch.arange(12)
    parts = [rows[World(r, 3).shard(12)] for r in range(3)]
    assert torch.equal(torch.cat(parts), rows) and all(len(p) == 4 for p in parts)
    with pytest.raises(WrapError, match="not divisible by the 3 processes"):
        World(0, 3).shard(8)


def test_commands_without_a_parallel_meaning_refuse_under_torchrun(chain, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result = run("eval", chain / "pt.safetensors", "--task", "count:a", code=1)
    one_line_error(result, "eval does not run data-parallel")


@pytest.mark.slow  # 17 s of two processes' start-ups: the slow tier (the built-in torchrun tests stay fast)
def test_torchrun_fine_tunes_and_relearns_user_records(tmp_path):
    """finetune --data and revive --data under torchrun with two gloo processes: the
    one-process weights, and one report with every seed whose curves are the one-process
    run's (rank 0 writes; each rank trains its half of every batch)."""
    from models import PAIRS, make_model_dir, write_jsonl

    base = make_model_dir(tmp_path / "base", "llama")
    recs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    common = ["--lr", "1e-2", "--steps", "4", "--batch-size", "4", "--device", "cpu", "--precision", "fp32", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "wrapcli"]

    run("finetune", base, "--data", recs, *common, "-o", tmp_path / "one")
    done = subprocess.run([*launch, "finetune", str(base), "--data", str(recs), *common, "-o", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=1e-4)

    relearn = ["revive", str(base), "--data", str(recs), "--eval-data", str(recs), "--threshold", "0.5", "--seeds", "2",
               *common]
    run(*relearn, "-o", tmp_path / "r1.json")
    done = subprocess.run([*launch, *relearn, "-o", str(tmp_path / "r2.json")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a = json.loads((tmp_path / "r1.json").read_text())["results"]
    b = json.loads((tmp_path / "r2.json").read_text())["results"]
    assert b["seeds"] == a["seeds"] == [0, 1]
    assert b["models"][0]["accuracy"]["per_seed"] == a["models"][0]["accuracy"]["per_seed"]
    np.testing.assert_allclose(b["models"][0]["loss"]["per_seed"], a["models"][0]["loss"]["per_seed"], atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".json") == ["r1.json", "r2.json"]


def test_built_in_revive_is_refused_under_torchrun(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                           "wrapcli", "revive", str(tmp_path / "x.safetensors"), "--task", "count:a", "-q"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "revive runs data-parallel on --data records only" in done.stderr


@pytest.mark.slow  # 18 s: the slow tier, beside the torchrun test of user records
def test_fsdp_shards_fine_tuning_and_relearning_of_user_records(tmp_path):
    """--fsdp under torchrun (torch FSDP2 on two gloo processes): the written weights are
    the one-process run's, gathered whole, and revive's one report has every seed with the
    one-process curves (every rank takes part in the sharded scoring)."""
    from models import PAIRS, make_model_dir, write_jsonl

    base = make_model_dir(tmp_path / "base", "llama")
    recs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    common = ["--lr", "1e-2", "--steps", "4", "--batch-size", "4", "--device", "cpu", "--precision", "fp32", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "wrapcli"]

    run("finetune", base, "--data", recs, *common, "-o", tmp_path / "one", "--log", tmp_path / "one.json")
    done = subprocess.run([*launch, "finetune", str(base), "--data", str(recs), *common, "--fsdp", "-o",
                           str(tmp_path / "two"), "--log-file", str(tmp_path / "two.json")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert one.keys() == two.keys()
    moved = 0
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=1e-4)
        moved += not torch.equal(one[name], load_file(base / "model.safetensors")[name])
    assert moved > 0  # it trained
    report = json.loads((tmp_path / "two.json").read_text())["results"]
    assert report["fsdp"] is True and report["processes"] == 2
    assert report["after"]["loss"] == pytest.approx(json.loads((tmp_path / "one.json").read_text())["results"]["after"]["loss"],
                                                    abs=1e-4)

    relearn = ["revive", str(base), "--data", str(recs), "--eval-data", str(recs), "--threshold", "0.5", "--seeds", "2",
               *common]
    run(*relearn, "-o", tmp_path / "r1.json")
    done = subprocess.run([*launch, *relearn, "--fsdp", "-o", str(tmp_path / "r2.json")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a = json.loads((tmp_path / "r1.json").read_text())["results"]
    b = json.loads((tmp_path / "r2.json").read_text())["results"]
    assert b["seeds"] == a["seeds"] == [0, 1] and b["fsdp"] is True
    assert b["models"][0]["accuracy"]["per_seed"] == a["models"][0]["accuracy"]["per_seed"]
    np.testing.assert_allclose(b["models"][0]["loss"]["per_seed"], a["models"][0]["loss"]["per_seed"], atol=1e-5)


def test_fsdp_is_refused_outside_torchrun_and_with_lora(tmp_path, monkeypatch):
    from models import PAIRS, make_model_dir, write_jsonl

    base = make_model_dir(tmp_path / "base", "llama")
    recs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    result = run("finetune", base, "--data", recs, "--fsdp", "-o", tmp_path / "out", code=2)
    one_line_error(result, "--fsdp shards the model over torchrun's processes", code=2)
    result = run("revive", base, "--task", "count:a", "--fsdp", code=2)
    one_line_error(result, "--fsdp goes with --data", code=2)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; refused before any process group is joined
    monkeypatch.setenv("RANK", "0")
    result = run("finetune", base, "--data", recs, "--fsdp", "--lora", "4", "-o", tmp_path / "out", code=2)
    one_line_error(result, "--fsdp with --lora", code=2)
    result = run("revive", base, "--data", recs, "--eval-data", recs, "--fsdp", "--resume", code=2)
    assert result.exit_code == 2  # revive has no --resume: typer's own usage error
    result = run("finetune", base, "--data", recs, "--fsdp", "--resume", "-o", tmp_path / "out", code=2)
    one_line_error(result, "keeps no resume state", code=2)
    assert not (tmp_path / "out").exists()


CLOCK_SKEW = """
import sys, time
sys.path.insert(0, {tests!r})
import torch
from models import tiny
from specs import parse_task
from wrapcli.core.distributed import world
from wrapcli.training.loop import TrainConfig, train

if world().rank == 1:  # this rank's clock runs fast: a save by the clock falls due here first
    real = time.time
    calls = [0]
    def fast():
        calls[0] += 1
        return real() + 100 * calls[0]
    time.time = fast
cfg = TrainConfig(steps=6, batch_size=8, lr=1e-3, eval_every=100, eval_size=16, precision="fp32")
train(tiny(seed=3), parse_task("count", text_len=48), cfg, state_path={state!r}, save_seconds=30)
print("finished")
"""


def test_a_save_by_the_clock_is_agreed_by_every_rank(tmp_path):
    """Each rank reads its own clock; a save (and the loss collective before it) that fell
    due on one rank only left the others waiting in a different collective, for ever."""
    script = tmp_path / "skew.py"
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script.write_text(CLOCK_SKEW.format(tests=tests, state=str(tmp_path / "run.state")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finished") == 2
