"""finetune, revive and conjugate eval through the CLI, JSON parsed; their bad inputs."""

import json
import math

import pytest

from conftest import TINY
from wrapcli.cli import app
from wrapcli.core.files import sha256
from wrapcli.models import checkpoint
from wrapcli.tasks import vocab

from cli import one_line_error, run, runner


def test_finetune_lineage_and_log(chain):
    pt, ft = chain / "pt.safetensors", chain / "ft.safetensors"
    lineage = checkpoint.load(ft).lineage
    assert [e["kind"] for e in lineage] == ["train", "finetune"]
    assert lineage[1]["parent_sha256"] == sha256(pt)
    assert lineage[1]["lr"] == 2.5e-3 and lineage[1]["lr_preset"] == "large"
    assert lineage[1]["spurious"] == 0.5 and lineage[1]["mix"] == 0.5
    report = json.loads((chain / "ft.json").read_text())
    assert report["schema"] == "wrapcli.finetune" and report["inputs"][0]["sha256"] == sha256(pt)
    last = report["results"]["log"][-1]["accuracy"]
    # both operands, with and without the spurious feature
    assert set(last) == {"count:b C_Te=0", "count:b C_Te=1", "count:a C_Te=0", "count:a C_Te=1"}
    assert set(report["results"]["final_eval"]) == {"count:b", "count:a"}
    # a second fine-tune extends the chain
    run("finetune", ft, *TINY, "--task", "count:a", "--lr", "1e-4", "--steps", "2", "--eval-size", "8",
        "-o", chain / "ft2.safetensors")
    lineage2 = checkpoint.load(chain / "ft2.safetensors").lineage
    assert len(lineage2) == 3 and lineage2[2]["parent_sha256"] == sha256(ft) and lineage2[2]["lr_preset"] is None


def test_revive_with_controls(chain, tmp_path):
    out = tmp_path / "revive.json"
    run("revive", chain / "ft.safetensors", "--task", "count:a", "--scratch", "--control",
        chain / "pt.safetensors", "--seeds", "2", "--steps", "12", "--eval-size", "16", *TINY,
        "--save-dir", tmp_path / "kept", "--keep-every", "5", "-o", out)
    res = json.loads(out.read_text())["results"]
    assert res["eval_steps"] == [0, 5, 7, 10, 12] and res["seeds"] == [0, 1]
    assert res["lr"] == pytest.approx(2.5e-4) and "large" in res["lr_source"]
    names = [m["name"] for m in res["models"]]
    assert names == ["revived", "control:pt.safetensors", "scratch"]
    for m in res["models"]:
        per_seed = m["accuracy"]["per_seed"]
        assert len(per_seed) == 2 and all(len(c) == 5 for c in per_seed)
        mean = [sum(c[i] for c in per_seed) / 2 for i in range(5)]
        assert m["accuracy"]["mean"] == pytest.approx(mean)
        for (lo, hi), mu in zip(m["accuracy"]["ci95"], mean):
            assert lo <= mu + 1e-12 and mu <= hi + 1e-12
    # the control at step 0 is the pretrained model itself: scored as eval scores it
    ev = json.loads(run("eval", chain / "pt.safetensors", "--task", "count:a", "--eval-size", "16", "--json", "-q").stdout)
    assert res["models"][1]["accuracy"]["per_seed"][0][0] == ev["results"]["tasks"]["count:a"]["natural"]["accuracy"]
    # the speed-up follows from the curves' steps to threshold, computed here independently
    sp, rev = res["speedup"], res["models"][0]["steps_to_threshold"]["per_seed"]
    if any(s is None for s in rev):
        assert sp["status"] == "not_revived" and sp["value"] is None
    elif any(s <= 0 for s in rev):
        assert sp["status"] == "already_there" and sp["value"] is None
    else:
        assert sp["status"] == "compared" and set(sp["controls"]) == set(names[1:])
        for m in res["models"][1:]:
            filled = [12 if s is None else max(s, 1e-9) for s in m["steps_to_threshold"]["per_seed"]]
            want = math.exp(sum(map(math.log, filled)) / 2 - sum(map(math.log, rev)) / 2)
            assert sp["controls"][m["name"]]["value"] == pytest.approx(want)
        assert sp["value"] == min(c["value"] for c in sp["controls"].values())
    kept = checkpoint.load(tmp_path / "kept" / "revived_seed1.safetensors")
    assert kept.lineage[-1]["kind"] == "revive" and kept.lineage[-1]["at_step"] == 12
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [
        f"revived_seed{s}{at}.safetensors" for s in (0, 1) for at in ("", "_step10", "_step5")]
    # the step-10 snapshot is the model the curve scored at step 10
    at10 = tmp_path / "kept" / "revived_seed1_step10.safetensors"
    ev10 = json.loads(run("eval", at10, "--task", "count:a", "--eval-size", "16", "--json", "-q").stdout)
    assert ev10["results"]["tasks"]["count:a"]["natural"]["accuracy"] == res["models"][0]["accuracy"]["per_seed"][1][3]
    assert checkpoint.load(at10).lineage[-1]["at_step"] == 10


def test_revive_plot_needs_the_extra(chain, tmp_path):
    try:
        import matplotlib  # noqa: F401  (is the plot extra installed?)
    except ImportError:
        res = runner.invoke(app, ["revive", str(chain / "ft.safetensors"), "--task", "count:a",
                                  "--plot", str(tmp_path / "r.png"), *TINY])
        assert res.exit_code == 1 and "wrapcli[plot]" in res.stderr
    else:
        run("revive", chain / "ft.safetensors", "--task", "count:a", "--steps", "3", "--eval-size", "8",
            "--plot", tmp_path / "r.png", *TINY)
        assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_conjugate_json(chain):
    rep = json.loads(run("eval", chain / "ft.safetensors", "--task", "count:a", "--task", "token",
                         "--conjugate", "a:c,c:a", "--eval-size", "20", "--json", "-q").stdout)["results"]
    assert rep["conjugate"]["mapping"] == {"a": "c", "b": "b", "c": "a"}
    assert set(rep["conjugate"]["tasks"]) == {"count:a", "token"}


def _tiny_without_task(tmp_path):
    from models import tiny

    path = tmp_path / "notask.safetensors"
    checkpoint.save(path, tiny(text_len=250), vocab=vocab.TOKENS)
    return path


def _other_config(tmp_path):
    from wrapcli.models.build import ModelShape, build_config, build_model
    from wrapcli.tasks.sequences import seq_len

    model = build_model(build_config(ModelShape("gpt2", 2, 2, 16), vocab.VOCAB_SIZE, seq_len(48)), 0)
    path = tmp_path / "other.safetensors"
    checkpoint.save(path, model, vocab=vocab.TOKENS)
    return path


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["finetune", "{notask}", "--task", "count:b", "--mix", "0.5", "-o", "{d}/x.safetensors"], 1, "--mix needs"),
        (["finetune", "{ft}", "--task", "count:b", "--lr", "huge", "-o", "{d}/x.safetensors"], 2, "learning-rate preset"),
        (["finetune", "{ft}", "--task", "count:b", "--spurious", "1.5", "-o", "{d}/x.safetensors"], 2, "spurious"),
        (["finetune", "{ft}", "--task", "token", "--spurious", "0.5", "-o", "{d}/x.safetensors"], 2, "count and index"),
        (["revive", "{ft}", "--task", "count:a", "--control", "{other}"], 1, "does not match"),
        (["revive", "{ft}", "--task", "count:a", "--threshold", "1.5"], 2, "--threshold"),
        (["revive", "{ft}", "--task", "count:a", "--threshold", "0"], 2, "--threshold"),
        (["revive", "{ft}", "--task", "count:a", "--keep-every", "5"], 2, "--keep-every"),
        (
            ["finetune", "{ft}", "--task", "count:b", "--precision", "fp16", "-o", "{d}/x.safetensors"],
            2,
            "--precision fp16: this command computes in fp32 or bf16",
        ),
        (["revive", "{ft}", "--task", "count"], 2, "fixed operand"),
        (["revive", "{pt}", "--task", "count:a"], 1, "pass --lr"),
        (["eval", "{ft}", "--conjugate", "a:b", "--device", "cpu"], 2, "not invertible"),
    ],
)
def test_bad_input(chain, tmp_path, args, code, message):
    paths = dict(d=tmp_path, ft=chain / "ft.safetensors", pt=chain / "pt.safetensors")
    if "{notask}" in args:
        paths["notask"] = _tiny_without_task(tmp_path)
    if "{other}" in args:
        paths["other"] = _other_config(tmp_path)
    extra = TINY if args[0] != "eval" else ["-q"]
    one_line_error(runner.invoke(app, [a.format(**paths) for a in args] + extra), message, code)
