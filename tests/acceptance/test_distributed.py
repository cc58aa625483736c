"""Data-parallel training under torchrun: two gloo processes on CPU give the one-process
weights, rank 0 alone writes, and a run resumes from a one-process state file."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY
from wrapcli.distributed import World
from wrapcli.errors import WrapError

from cli import one_line_error, run

# fp32: bf16 rounding would differ between a batch of 8 and two slices of 4
RUN = ["--steps", "8", "--batch-size", "8", "--eval-size", "16", "--prior", "a=0.9,b=0.1", "--precision", "fp32"]


def test_torchrun_two_processes_give_the_one_process_weights_and_resume(tmp_path):
    from wrapcli import presets
    from wrapcli.runs.train import pretrain

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
