"""The report schema: docs/reports.md is current, and validation catches what it should.
(Every report the suite's commands write is validated as it is written: conftest.py sets
WRAPCLI_VALIDATE_REPORTS=1.)"""

import copy
import json
from pathlib import Path

from wrapcli.report import schema

from cli import run

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reports.md"


def test_docs_reports_md_is_generated_from_the_schema():
    assert DOCS.read_text() == schema.markdown(), "stale: run python -m wrapcli.report.schema > docs/reports.md"


def test_every_command_has_a_documented_results_schema():
    text = DOCS.read_text()
    for name in schema.RESULTS:
        assert f"## `wrapcli {name}` results" in text


def test_validate_finds_every_problem_at_once(chain):
    report = json.loads(run("eval", chain / "pt.safetensors", "--task", "count:a", "--eval-size", "8", "--device", "cpu",
                            "-q", "--json").stdout)
    assert schema.validate(report) == []
    bad = copy.deepcopy(report)
    del bad["environment"]["torch"]
    bad["seed"] = "zero"
    bad["results"]["surprise"] = 1
    bad["results"]["tasks"]["count:a"]["natural"]["ci95"] = "narrow"
    problems = schema.validate(bad)
    assert len(problems) == 4
    assert "environment.torch: missing" in problems and "results.surprise: not in the schema" in problems
    assert any(p.startswith("seed: expected int or null") or p.startswith("seed: expected int|null") for p in problems)
    bad = dict(report, schema="wrapcli.nothing")
    assert any("unknown report" in p for p in schema.validate(bad))


def test_envelope_records_the_numerical_stack(chain):
    env = json.loads(run("eval", chain / "pt.safetensors", "--task", "count:a", "--eval-size", "8", "--device", "cpu",
                         "--precision", "fp32", "-q", "--json").stdout)
    assert env["precision"] == "fp32" and env["results_version"] == schema.RESULTS_VERSIONS["eval"]
    e = env["environment"]
    assert e["torch"] and e["transformers"] and e["numpy"] and e["python"] and e["torch_threads"] >= 1
    assert isinstance(e["cpu_flags"], list)
