"""No command overwrites its own inputs or deletes what it did not write: every clash is a
usage error (exit 2, one line) before any work, and every file is left as it was."""

import hashlib
import os

import pytest

from wrapcli.cli import app

from cli import runner

TINY = ["--preset", "smoke", "--device", "cpu", "-q"]


def snapshot(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


# (arguments, words the one-line error must contain); {pt} {ft} {d} are filled in
CLASHES = [
    (["eval", "{pt}", "-o", "{pt}"], "is also an input"),
    (["compare", "{pt}", "{ft}", "-o", "{ft}"], "is also an input"),
    (["compare", "{pt}", "{ft}", "-o", "{d}/r.json", "--markdown", "{d}/r.json"], "two outputs"),
    (["compare", "{pt}", "{ft}", "-o", "{d}/../{d_name}/r.json", "--markdown", "{d}/r.json"], "two outputs"),
    (["train", *TINY, "--steps", "2", "-o", "{d}/x.safetensors", "--log", "{d}/x.safetensors"], "two outputs"),
    (["finetune", "{pt}", *TINY, "--task", "count:b", "--steps", "2", "-o", "{pt}"], "is also an input"),
    (["prune", "{ft}", "--task", "count:a", "--k", "0,1", "-w", "{ft}", "--write-k", "1", "-q"], "is also an input"),
    (["probe", "{ft}", "--target", "count:a", "-o", "{ft}", "-q"], "is also an input"),
    (["revive", "{ft}", "--task", "count:a", *TINY, "-o", "{ft}"], "is also an input"),
    (["eval", "{pt}", "-o", ""], "empty"),
    (["export", "{pt}", "{pt}"], "is also an input"),
]


@pytest.mark.parametrize("args, message", CLASHES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CLASHES])
def test_an_output_never_replaces_an_input(chain, args, message):
    before = snapshot(chain)
    fill = dict(pt=chain / "pt.safetensors", ft=chain / "ft.safetensors", d=chain, d_name=chain.name)
    result = runner.invoke(app, [a.format(**fill) for a in args])
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (result.exit_code, lines)
    assert snapshot(chain) == before


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
