"""Acceptance: the CPU preset learns what the README says it learns. Minutes: marked slow
(`make test-all` runs it; `make test` and CI do not)."""

import json

import pytest

from wrapcli.cli import app

from cli import runner


@pytest.mark.slow
def test_cpu_preset_counts_the_main_operand(tmp_path):
    pt = tmp_path / "pt.safetensors"
    res = runner.invoke(app, ["train", "--task", "count", "--prior", "a=0.9,b=0.1", "--device", "cpu", "-q", "-o", str(pt)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", str(pt), "--task", "count:a", "--task", "count:b", "--json", "-q"])
    tasks = json.loads(res.stdout)["results"]["tasks"]
    assert tasks["count:a"]["natural"]["accuracy"] >= 0.95
    # the rarely seen operand is counted worse than the main one
    assert tasks["count:b"]["natural"]["accuracy"] < tasks["count:a"]["natural"]["accuracy"] - 0.2
