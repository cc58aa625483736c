"""compare: CKA against known cases (the HSIC formulation: tests/unit/test_independent.py), evidence read by fields, and the CLI
(the decision rules themselves: tests/unit/test_verdicts.py)."""

import json

import numpy as np
import pytest

from wrapcli.analyses import audit
from wrapcli.cli import app
from wrapcli.verdicts import rules as verdicts

from cli import one_line_error, run, runner
from models import MLP_OUT, archs, rank1_edit, tiny_hf


def test_linear_cka_known_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert audit.linear_cka(x, x @ q * 3.0) == pytest.approx(1.0)  # invariant to rotation and scale
    assert audit.linear_cka(x, rng.normal(size=(200, 8))) < 0.2


@pytest.mark.parametrize("arch", archs())
def test_cli_weights_only_known_edit(tmp_path, arch):
    model = tiny_hf(arch)
    model.save_pretrained(tmp_path / "a")
    rank1_edit(model, arch)
    model.save_pretrained(tmp_path / "b")
    res = json.loads(run("compare", tmp_path / "a", tmp_path / "b", "--device", "cpu", "-q", "--json").stdout)
    w = res["results"]["weights"][0]
    assert w["changed_tensors"] == [MLP_OUT[arch]] and w["tensors"][MLP_OUT[arch]]["rank"] == 1


def test_precision_is_the_dtype_the_models_run_in_and_dtype_its_old_name(tmp_path):
    model = tiny_hf("gpt2")
    model.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    for flags, want in ((["--precision", "bf16"], "bf16"), (["--dtype", "float16"], "fp16"), ([], "fp32")):
        res = json.loads(run("compare", tmp_path / "a", tmp_path / "b", *flags, "--device", "cpu", "-q", "--json").stdout)
        assert res["precision"] == want
    one_line_error(run("compare", tmp_path / "a", tmp_path / "b", "--precision", "bf16", "--dtype", "float32",
                       code=2), "not both", code=2)


def test_cli_with_tasks_reports_and_markdown(chain, tmp_path):
    pt, ft = chain / "pt.safetensors", chain / "ft.safetensors"
    run("probe", ft, "--target", "count:a", "--eval-size", "100", "--no-attention", "--device", "cpu", "-q",
        "-o", tmp_path / "probe.json")
    run("prune", ft, "--task", "count:a", "--unit", "head", "--k", "0,1", "--eval-size", "16", "--batch-size", "16",
        "--device", "cpu", "-q", "-o", tmp_path / "prune.json")
    md = tmp_path / "audit.md"
    res = json.loads(run("compare", pt, ft, "--task", "count:a", "--task", "count:b", "--eval-size", "64",
                         "--reports", tmp_path / "probe.json", "--reports", tmp_path / "prune.json",
                         "--markdown", md, "--device", "cpu", "-q", "--json").stdout)["results"]
    assert set(res["behaviour"]) == {"count:a", "count:b"}
    assert [(r["layer"], r["hook"]) for r in res["representations"][str(ft)]] == [
        (-1, "hook_embed"), (0, "blocks.0.hook_resid_post"), (1, "blocks.1.hook_resid_post")]
    assert res["evidence"][str(ft)] == [str(tmp_path / "probe.json"), str(tmp_path / "prune.json")]
    labels = {v["task"]: v["label"] for v in res["verdicts"][str(ft)]}
    assert set(labels) == {"count:a", "count:b"} and set(labels.values()) <= set(verdicts.LABELS)
    by_task = {v["task"]: v for v in res["verdicts"][str(ft)]}
    assert [c["kind"] for c in by_task["count:a"]["criteria"]] == ["behaviour", "probe", "prune"]
    assert [c["kind"] for c in by_task["count:b"]["criteria"]] == ["behaviour"]  # evidence goes by task
    for c in by_task["count:a"]["criteria"]:
        assert c["outcome"] in ("pass", "fail", "unclear") and len(c["ci95"]) == 2
    assert "## Verdicts" in md.read_text() and "linear CKA" in md.read_text()
    # a report about a checkpoint outside the comparison is refused
    one_line_error(runner.invoke(app, ["compare", str(pt), str(pt), "--reports", str(tmp_path / "probe.json"),
                                       "--device", "cpu"]), "not among those compared")
    # and so is evidence about a task compare was not asked about
    one_line_error(runner.invoke(app, ["compare", str(pt), str(ft), "--task", "count:b", "--eval-size", "16",
                                       "--reports", str(tmp_path / "probe.json"), "--device", "cpu"]),
                   "evidence about count:a, but compare was given --task count:b")
    # and a report from before intervals existed
    old = json.loads((tmp_path / "probe.json").read_text())
    old["results_version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(old))
    one_line_error(runner.invoke(app, ["compare", str(pt), str(ft), "--task", "count:a", "--eval-size", "16",
                                       "--reports", str(tmp_path / "old.json"), "--device", "cpu"]),
                   "run probe again")


def test_fail_on_exit_codes(chain, monkeypatch):
    pt = str(chain / "pt.safetensors")
    assert runner.invoke(app, ["compare", pt, pt, "--task", "count:a", "--eval-size", "200", "--fail-on", "changed",
                               "--device", "cpu", "-q"]).exit_code == 0  # identical: intact
    fake = {"verdicts": {"x": [{"label": "wrapped", "task": "count:a", "reason": "r", "criteria": [], "settle": []}]},
            "weights": []}
    from wrapcli.runs import compare as run

    monkeypatch.setattr(run, "compare", lambda **kw: fake)
    monkeypatch.delenv("WRAPCLI_VALIDATE_REPORTS")  # the fake result is not a whole report
    assert runner.invoke(app, ["compare", pt, pt, "--fail-on", "wrapped", "-q"]).exit_code == 3
    assert runner.invoke(app, ["compare", pt, pt, "--fail-on", "changed", "-q"]).exit_code == 3
    assert runner.invoke(app, ["compare", pt, pt, "--fail-on", "removed", "-q"]).exit_code == 2


def test_mismatched_checkpoints_one_line(tmp_path):
    tiny_hf("gpt2").save_pretrained(tmp_path / "a")
    tiny_hf("gpt2", vocab_size=120).save_pretrained(tmp_path / "b")
    one_line_error(runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--device", "cpu"]),
                   "has shape")
    one_line_error(runner.invoke(app, ["compare", str(tmp_path / "a"), "--device", "cpu"]), "at least two")
