"""Hardening beyond the one-line refusals of tests/integration/test_bad_inputs.py: studying broken
models on request, a non-finite loss, interrupted runs and their temporaries."""

import json
import os

import pytest
import torch

from wrapcli.cli import app
from wrapcli.models import checkpoint

from cli import one_line_error, run, runner

TINY = ["--preset", "smoke", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def broken(chain, tmp_path_factory):
    """inf1.safetensors: one Inf among the fine-tuned weights."""
    d = tmp_path_factory.mktemp("broken")
    ck = checkpoint.load(chain / "ft.safetensors")
    with torch.no_grad():
        next(iter(ck.model.parameters())).view(-1)[3] = float("inf")
    checkpoint.save(d / "inf1.safetensors", ck.model, vocab=ck.vocab, task=ck.task, lineage=ck.lineage)
    return d


def test_allow_nonfinite_loads_a_broken_model(broken):
    result = runner.invoke(app, ["--allow-nonfinite", "eval", str(broken / "inf1.safetensors"), "--eval-size", "8", "-q",
                                 "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["results"]["n"] == 8
    # the flag does not outlive the command that was given it
    assert runner.invoke(app, ["eval", str(broken / "inf1.safetensors"), "--eval-size", "8", "-q"]).exit_code == 1


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_state(tmp_path):
    """The loss turns NaN at the 5th step; with a state saved every 3 steps, training stops
    at step 6 (before saving that state), and the step-3 state is what is left."""
    from safetensors import safe_open

    from wrapcli.core.errors import WrapError
    from wrapcli.training.loop import TrainConfig, train

    from models import tiny

    class NanFromStep5:
        identity = "nan-from-step-5"
        calls = 0

        def batch(self, step, cfg, device):
            return {"input_ids": torch.zeros(2, 3, dtype=torch.long)}

        def loss(self, model, batch, cfg):
            self.calls += 1
            w = next(model.parameters())
            return w.sum() * (float("nan") if self.calls >= 5 else 0.0) + 1.0

    state = tmp_path / "run.state"
    with pytest.raises(WrapError, match="became nan by step 6"):
        train(tiny(), NanFromStep5(), TrainConfig(steps=20, batch_size=2, lr=1e-3), state_path=state, save_every=3)
    with safe_open(str(state), "pt") as f:
        assert f.metadata()["step"] == "3"


def test_half_precision_weights_are_computed_in_float32(chain, tmp_path):
    """fp16 / bf16 weights (common on the Hub) load, upcast to float32, with the same
    predictions as the float32 file up to the rounding of the weights."""
    from safetensors.torch import load_file, save_file

    meta = checkpoint.read_metadata(chain / "pt.safetensors")
    save_file({k: v.half() for k, v in load_file(chain / "pt.safetensors").items()},
              tmp_path / "half.safetensors", metadata=meta)
    ck = checkpoint.load(tmp_path / "half.safetensors")
    assert all(p.dtype == torch.float32 for p in ck.model.parameters())


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_runs_temporaries_are_removed_by_the_next_run(chain, tmp_path):
    out = tmp_path / "x.safetensors"
    stale = [tmp_path / f".x.safetensors.wp{_dead_pid()}.abc123.tmp", tmp_path / f".x.safetensors.wp{_dead_pid()}.d.tmp",
             tmp_path / f".x.safetensors.state.wp{_dead_pid()}.s.tmp"]  # a state write killed with -9
    stale[2].write_bytes(b"half a state")
    stale[0].write_bytes(b"half a file")
    stale[1].mkdir()
    (stale[1] / "model.safetensors").write_bytes(b"x")
    live = tmp_path / f".x.safetensors.wp{os.getpid()}.live.tmp"  # a running writer's: kept
    live.write_bytes(b"in progress")
    other = tmp_path / ".y.safetensors.wp1.abc.tmp"  # another output's: not ours to touch
    other.write_bytes(b"y")
    result = runner.invoke(app, ["train", *TINY, "--steps", "2", "--eval-size", "8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in stale) and live.exists() and other.exists() and out.is_file()


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    """A run terminated mid-way exits 128 + SIGTERM with one line, writes no output, and
    leaves no temporary file behind."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "wrapcli", "train", *TINY, "--steps", "100000", "--save-every", "1",
                             "-o", str(tmp_path / "t.safetensors")], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "t.safetensors.state").exists() and time.time() < deadline:
        time.sleep(0.1)  # states are being written, one a step
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and err.strip() == "wrapcli: terminated", (proc.returncode, err)
    assert not (tmp_path / "t.safetensors").exists()  # no output from an unfinished run


def test_outputs_write_through_links_and_into_special_files(chain, tmp_path):
    """-o onto a symbolic link writes its target (the link stays a link); -o onto a FIFO
    streams the report into it (never renames a file over it)."""
    import json
    import threading

    target = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)
    result = runner.invoke(app, ["eval", str(chain / "pt.safetensors"), "--eval-size", "8", "-q", "-o", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and json.loads(target.read_text())["schema"] == "wrapcli.eval"
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    result = runner.invoke(app, ["eval", str(chain / "pt.safetensors"), "--eval-size", "8", "-q", "-o", str(fifo)])
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert fifo.is_fifo() and json.loads(got[0])["schema"] == "wrapcli.eval"


def test_a_directory_wrapcli_did_not_write_is_never_replaced(tmp_path):
    """A third-party model directory (config.json, no wrapcli.json) or a project folder is
    refused as an output; an output directory that holds an input is refused too."""
    from models import PAIRS, make_model_dir, write_jsonl

    third = make_model_dir(tmp_path / "third", "llama")
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    before = {p: p.read_bytes() for p in third.rglob("*") if p.is_file()}
    ft = ["finetune", str(third), "--data", str(data), "--steps", "1", "--batch-size", "2", "--device", "cpu", "-q"]
    one_line_error(runner.invoke(app, [*ft, "-o", str(third)]), "is also an input", 2)
    other = make_model_dir(tmp_path / "other", "llama")
    one_line_error(runner.invoke(app, [*ft, "-o", str(other)]), "a model directory wrapcli did not write", 1)
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "config.json").write_text("{}")
    (tmp_path / "project" / "notes.txt").write_text("mine")
    one_line_error(runner.invoke(app, [*ft, "-o", str(tmp_path / "project")]), "wrapcli did not write", 1)
    assert {p: p.read_bytes() for p in third.rglob("*") if p.is_file()} == before
    assert (tmp_path / "project" / "notes.txt").read_text() == "mine"
    # an earlier output of wrapcli is replaced
    assert runner.invoke(app, [*ft, "-o", str(tmp_path / "mine")]).exit_code == 0
    assert runner.invoke(app, [*ft, "-o", str(tmp_path / "mine")]).exit_code == 0
    # export into a folder that holds the checkpoint being exported
    ckdir = tmp_path / "ex"
    ckdir.mkdir()
    run("train", "--preset", "smoke", "--steps", "2", "--eval-size", "8", "--device", "cpu", "-q", "-o",
        ckdir / "pt.safetensors")
    one_line_error(runner.invoke(app, ["export", str(ckdir / "pt.safetensors"), str(ckdir)]), "contains an input", 2)
    assert (ckdir / "pt.safetensors").is_file()


def test_force_replaces_a_directory_wrapcli_did_not_write_but_never_one_holding_an_input(chain, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    one_line_error(runner.invoke(app, ["export", str(chain / "pt.safetensors"), str(folder)]), "or --force", 1)
    assert (folder / "notes.txt").read_text() == "mine"
    result = runner.invoke(app, ["export", str(chain / "pt.safetensors"), str(folder), "--force"])
    assert result.exit_code == 0, result.output
    assert (folder / "config.json").is_file() and not (folder / "notes.txt").exists()
    one_line_error(runner.invoke(app, ["export", str(chain / "pt.safetensors"), str(chain), "--force"]),
                   "contains an input", 2)
    one_line_error(runner.invoke(app, ["train", "--preset", "smoke", "--force", "-o", str(tmp_path / "x.safetensors")]),
                   "--force applies to a directory output", 2)


@pytest.fixture
def full_disk(tmp_path):
    """A real file system with no room (a 64 KiB tmpfs, 60 KB taken): needs root and mount,
    which CI has; skipped with the reason elsewhere."""
    import subprocess

    mnt = tmp_path / "full"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()[:120]})")
    (mnt / "filler").write_bytes(b"\0" * 60_000)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("args, written", [
    (["train", *TINY, "--steps", "2", "--eval-size", "16", "-o", "{full}/m.safetensors"], "{full}/m.safetensors"),
    (["train", *TINY, "--steps", "4", "--eval-size", "16", "--save-every", "2", "-o", "{full}/m.safetensors"],
     "{full}/m.safetensors.state"),
    (["eval", "{pt}", "--eval-size", "8", "-q", "-o", "{full}/r.json"], "{full}/r.json"),
    (["export", "{pt}", "{full}/hf"], "{full}/hf"),
])
def test_a_full_disk_names_the_file_and_leaves_nothing(chain, full_disk, args, written):
    """Every writer on a full disk: one line naming the file being written (no library
    wording: safetensors says "Error while serializing: I/O error"), and nothing partial
    left behind."""
    fill = {"full": full_disk, "pt": chain / "pt.safetensors"}
    result = runner.invoke(app, [a.format(**fill) for a in args])
    one_line_error(result, f"cannot write {written.format(**fill)}: no space left on the device")
    assert "serializ" not in result.stderr and "os error" not in result.stderr
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]
