"""No command deletes what it did not write (the clashes of outputs with inputs are cases
of tests/integration/test_bad_inputs.py)."""

import hashlib
import os

from wrapcli.cli import app

from cli import runner

TINY = ["--preset", "smoke", "--device", "cpu", "-q"]


def snapshot(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_export_never_deletes_a_directory_it_did_not_write(chain, tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (mine / "sub").mkdir()
    before = snapshot(tmp_path)
    for dest in (".", str(mine), str(tmp_path)):
        monkeypatch.chdir(mine)
        result = runner.invoke(app, ["export", str(chain / "pt.safetensors"), dest])
        assert result.exit_code == 1 and "will not replace" in result.stderr, (dest, result.stderr)
        assert snapshot(tmp_path) == before and (mine / "sub").is_dir()
    # an earlier export is replaced, and a new export is complete
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert runner.invoke(app, ["export", str(chain / "pt.safetensors"), "hf"]).exit_code == 0
    assert (tmp_path / "hf" / "config.json").is_file()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary left behind


def test_train_checks_its_log_before_training(chain, tmp_path):
    out = tmp_path / "t.safetensors"
    out.write_bytes((chain / "pt.safetensors").read_bytes())
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["train", *TINY, "--steps", "2", "-o", str(out), "--log", str(tmp_path / "no" / "log.json")])
    assert result.exit_code == 1 and "does not exist" in result.stderr
    assert snapshot(tmp_path) == before
