"""compare: the verdict logic on hand-made evidence, CKA against known cases, and the CLI."""

import json

import numpy as np
import pytest

from wrapcli import audit
from wrapcli.cli import app
from wrapcli.errors import WrapError

from cli import one_line_error, run, runner
from models import tiny_hf
from test_weightdiff import MLP_OUT, rank1_edit

TH = audit.Thresholds()


def probe_report(acc, majority=0.35):
    layers = [{"layer": "B0", "accuracy": majority, "majority_baseline": majority},
              {"layer": "B1", "accuracy": acc, "majority_baseline": majority},
              {"layer": "B2", "accuracy": acc, "majority_baseline": majority}]
    return {"path": "probe.json", "schema": "wrapcli.probe", "results": {"target": "count:a", "layers": layers}}


def prune_report(accs, majority=0.35):
    sweep = [{"k": k, "results": {"count:a": {"natural": {"accuracy": a, "majority_baseline": majority}}}}
             for k, a in accs]
    return {"path": "prune.json", "schema": "wrapcli.prune", "results": {"task": "count:a", "unit": "head", "sweep": sweep}}


def revive_report(value):
    verdict = f"revived {value}x faster" if value else "not revived"
    return {"path": "revive.json", "schema": "wrapcli.revive",
            "results": {"task": "count:a", "speedup": {"value": value, "verdict": verdict}}}


def test_verdicts_on_hand_made_evidence():
    v = audit.verdict("count:a", 0.99, 0.36, audit.evidence("count:a", [probe_report(0.98)], TH), TH)
    assert v["label"] == "wrapped" and "layers B1–B2" in v["text"] and "98%" in v["text"]
    v = audit.verdict("count:a", 0.99, 0.36, audit.evidence("count:a", [prune_report([(0, 0.36), (2, 0.55)])], TH), TH)
    assert v["label"] == "wrapped" and "pruning 2 heads (36% -> 55%" in v["text"]
    # climbing from far below the majority baseline up to it is not a restoration
    to_majority = audit.evidence("count:a", [prune_report([(0, 0.19), (3, 0.34)])], TH)
    assert audit.verdict("count:a", 0.99, 0.19, to_majority, TH)["label"] == "removed"
    v = audit.verdict("count:a", 0.99, 0.36, audit.evidence("count:a", [revive_report(12.0)], TH), TH)
    assert v["label"] == "wrapped"
    dead = [probe_report(0.40), prune_report([(0, 0.36), (2, 0.38)]), revive_report(1.2)]
    assert audit.verdict("count:a", 0.99, 0.36, audit.evidence("count:a", dead, TH), TH)["label"] == "removed"
    assert audit.verdict("count:a", 0.99, 0.36, [], TH)["label"] == "suppressed"
    assert audit.verdict("count:a", 0.99, 0.90, [], TH)["label"] == "intact"
    # evidence about another task is not evidence about this one
    assert audit.evidence("count:b", [probe_report(0.98)], TH) == []


def test_linear_cka_known_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert audit.linear_cka(x, x @ q * 3.0) == pytest.approx(1.0)  # invariant to rotation and scale
    assert audit.linear_cka(x, rng.normal(size=(200, 8))) < 0.2


def test_thresholds_validated():
    with pytest.raises(WrapError, match="drop"):
        audit.Thresholds(drop=0)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_cli_weights_only_known_edit(tmp_path, arch):
    model = tiny_hf(arch)
    model.save_pretrained(tmp_path / "a")
    rank1_edit(model, arch)
    model.save_pretrained(tmp_path / "b")
    res = json.loads(run("compare", tmp_path / "a", tmp_path / "b", "--device", "cpu", "-q", "--json").stdout)
    w = res["results"]["weights"][0]
    assert w["changed_tensors"] == [MLP_OUT[arch]] and w["tensors"][MLP_OUT[arch]]["rank"] == 1


def test_cli_with_tasks_reports_and_markdown(chain, tmp_path):
    pt, ft = chain / "pt.safetensors", chain / "ft.safetensors"
    run("probe", ft, "--target", "count:a", "--n", "100", "--no-attention", "--device", "cpu", "-q", "-o", tmp_path / "probe.json")
    run("prune", ft, "--task", "count:a", "--unit", "head", "--k", "0,1", "--eval-size", "16", "--batch-size", "16",
        "--device", "cpu", "-q", "-o", tmp_path / "prune.json")
    md = tmp_path / "audit.md"
    res = json.loads(run("compare", pt, ft, "--task", "count:a", "--task", "count:b", "--n", "64",
                         "--reports", tmp_path / "probe.json", "--reports", tmp_path / "prune.json",
                         "--markdown", md, "--device", "cpu", "-q", "--json").stdout)["results"]
    assert set(res["behaviour"]) == {"count:a", "count:b"}
    assert [r["layer"] for r in res["representations"][str(ft)]] == ["B0", "B1", "B2"]
    assert res["evidence"][str(ft)] == [str(tmp_path / "probe.json"), str(tmp_path / "prune.json")]
    labels = {v["task"]: v["label"] for v in res["verdicts"][str(ft)]}
    assert set(labels) == {"count:a", "count:b"} and set(labels.values()) <= set(audit.LABELS)
    assert "## Verdicts" in md.read_text() and "linear CKA" in md.read_text()
    # a report about a checkpoint outside the comparison is refused
    one_line_error(runner.invoke(app, ["compare", str(pt), str(pt), "--reports", str(tmp_path / "probe.json"),
                                       "--device", "cpu"]), "not among those compared")


def test_fail_on_exit_codes(chain, monkeypatch):
    pt = str(chain / "pt.safetensors")
    assert runner.invoke(app, ["compare", pt, pt, "--task", "count:a", "--n", "16", "--fail-on", "changed",
                               "--device", "cpu", "-q"]).exit_code == 0  # identical: intact
    fake = {"verdicts": {"x": [{"label": "wrapped", "text": "t"}]}, "weights": []}
    monkeypatch.setattr(audit, "compare", lambda **kw: fake)
    assert runner.invoke(app, ["compare", pt, pt, "--fail-on", "wrapped", "-q"]).exit_code == 3
    assert runner.invoke(app, ["compare", pt, pt, "--fail-on", "changed", "-q"]).exit_code == 3
    assert runner.invoke(app, ["compare", pt, pt, "--fail-on", "removed", "-q"]).exit_code == 1


def test_mismatched_checkpoints_one_line(tmp_path):
    tiny_hf("gpt2").save_pretrained(tmp_path / "a")
    tiny_hf("gpt2", vocab_size=120).save_pretrained(tmp_path / "b")
    one_line_error(runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--device", "cpu"]),
                   "has shape")
    one_line_error(runner.invoke(app, ["compare", str(tmp_path / "a"), "--device", "cpu"]), "at least two")
