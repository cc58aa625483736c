"""Imports run one way (README of tests/import_graph.py): commands -> runs -> analyses ->
checkpoint / training / evaluation -> models / adapters / tasks / files. A run
(wrapcli/runs/) loads, checks, writes and assembles a report; an analysis is pure: it
imports no other analysis, no run and no command, and loads no checkpoint (weightdiff,
which streams tensors from the files it compares, reads their headers). No module
imports another's private name. The graph is read from the source, function-level
imports included."""

from import_graph import graph

ANALYSES = {"wrapcli.pruning", "wrapcli.probing", "wrapcli.revival", "wrapcli.weightdiff", "wrapcli.audit",
            "wrapcli.compiled_training", "wrapcli.relearning"}
ABOVE_ANALYSES = {"wrapcli.cli", "wrapcli.clidoc", "wrapcli.console", "wrapcli.tables", "wrapcli.plots"}
FOUNDATION = {"wrapcli.errors", "wrapcli.files", "wrapcli.stats", "wrapcli.schema", "wrapcli.kernels", "wrapcli.models",
              "wrapcli.adapters", "wrapcli.runtime", "wrapcli.distributed", "wrapcli.presets", "wrapcli.verdicts",
              "wrapcli.thresholds", "wrapcli.lora"}


def targets(deps):
    return {d for d, _ in deps}


def test_no_module_imports_a_private_name():
    private = [(mod, f"{d}.{name}") for mod, deps in graph().items() for d, name in deps
               if name and name.startswith("_") and not name.endswith("__")]
    assert private == []


def test_analyses_import_no_other_analysis_run_or_command():
    bad = [(mod, d) for mod, deps in graph().items() if mod in ANALYSES for d in targets(deps)
           if d != mod and (d in ANALYSES | ABOVE_ANALYSES or d.startswith(("wrapcli.commands", "wrapcli.runs")))]
    assert bad == []


def test_analyses_load_no_checkpoint():
    bad = [mod for mod, deps in graph().items() if mod in ANALYSES - {"wrapcli.weightdiff"}
           and "wrapcli.checkpoint" in targets(deps)]
    assert bad == []


def test_only_commands_import_runs():
    bad = [(mod, d) for mod, deps in graph().items() for d in targets(deps)
           if d.startswith("wrapcli.runs") and not mod.startswith(("wrapcli.commands", "wrapcli.runs"))]
    assert bad == []


def test_the_foundation_imports_nothing_above_it():
    allowed = FOUNDATION | {"wrapcli"} | {m for m in graph() if m.startswith("wrapcli.tasks")}
    bad = [(mod, d) for mod, deps in graph().items() if mod in FOUNDATION for d in targets(deps) - allowed]
    assert bad == []


def test_tasks_are_pure_python_below_everything():
    bad = [(mod, d) for mod, deps in graph().items() if mod.startswith("wrapcli.tasks") for d in targets(deps)
           if not (d.startswith("wrapcli.tasks") or d == "wrapcli.errors")]
    assert bad == []


def test_only_the_cli_imports_commands():
    bad = [(mod, d) for mod, deps in graph().items() for d in targets(deps)
           if d.startswith("wrapcli.commands") and not (mod.startswith("wrapcli.commands") or mod == "wrapcli.cli")]
    assert bad == []
