"""Same command, same bits: a short pretrain -> fine-tune -> eval chain run twice under the
study's pinned settings (1 thread, fp32, SOURCE_DATE_EPOCH for the time stamps) writes
byte-identical checkpoints and identical results."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

SETTINGS = ["--preset", "smoke", "--device", "cpu", "--precision", "auto", "-q"]


def chain(root, threads=1):
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("OMP_NUM_THREADS", None)
    wrapcli = [sys.executable, "-m", "wrapcli", "--threads", str(threads)]
    # relative paths: the command line is part of the lineage, so it must be the same
    steps = [
        ["train", "--task", "count", "--prior", "a=0.9,b=0.1", "--steps", "30", "-o", "pt.safetensors"],
        ["finetune", "pt.safetensors", "--task", "count:b", "--lr", "large", "--steps", "20",
         "--spurious", "0.5", "-o", "ft.safetensors"],
    ]
    for args in steps:
        subprocess.run([*wrapcli, *args, *SETTINGS], check=True, env=env, cwd=root)
    subprocess.run([*wrapcli, "eval", "ft.safetensors", "--task", "count:a", "--task", "count:b",
                    "--eval-size", "64", "--device", "cpu", "-q", "-o", "eval.json"], check=True, env=env, cwd=root)
    report = json.loads((root / "eval.json").read_text())
    sha = {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in ("pt.safetensors", "ft.safetensors")}
    return sha, report


def test_a_chain_rerun_is_bit_identical(tmp_path):
    """The two chains run side by side (one pinned thread each, two cores): the same bits
    even while another process shares the machine."""
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ThreadPoolExecutor(2) as pool:
        (sha_a, report_a), (sha_b, report_b) = pool.map(chain, (tmp_path / "a", tmp_path / "b"))
    assert sha_a == sha_b
    assert report_a["results"]["tasks"] == report_b["results"]["tasks"]
    assert report_a["precision"] == "fp32" and report_a["environment"]["torch_threads"] == 1


@pytest.mark.parametrize("bad", ["0", "two"])
def test_threads_must_be_a_positive_count(tmp_path, bad):
    env = {**os.environ, "WRAPCLI_THREADS": bad}
    res = subprocess.run([sys.executable, "-m", "wrapcli", "eval", str(tmp_path / "x.safetensors")],
                         capture_output=True, text=True, env=env)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "WRAPCLI_THREADS" in lines[0], res.stderr
