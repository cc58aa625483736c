"""Imports run one way, by package (the graph is read from the source, function-level and
type-only imports included; tests/import_graph.py):

    cli -> commands/ -> runs/ -> analyses/, compiled/ -> the base modules -> tasks/ -> errors

A command parses options and prints; a run (runs/) loads, checks, writes and assembles a
report; an analysis (analyses/) is pure: it imports no other analysis, no run and no
command, and loads no checkpoint (the weight diff streams tensors from the files it
compares, so it reads their headers). compiled/ holds the compiled (Tracr) models and
their training, beside analyses/. The base modules (wrapcli/*.py) import nothing from the
packages above them, and no module imports another's private name. No cycles."""

import pytest

from import_graph import graph

TOP = ("wrapcli.cli", "wrapcli.clidoc", "wrapcli.__main__")


def layer(mod: str) -> int:
    """0 = cli, 1 = commands, 2 = runs, 3 = analyses and compiled, 4 = base, 5 = tasks,
    6 = errors (what every layer raises)."""
    if mod in TOP:
        return 0
    if mod == "wrapcli.core.errors":
        return 6
    for prefix, rank in (("wrapcli.commands", 1), ("wrapcli.runs", 2), ("wrapcli.analyses", 3),
                         ("wrapcli.compiled", 3), ("wrapcli.tasks", 5)):
        if mod == prefix or mod.startswith(prefix + "."):
            return rank
    return 4


def package(mod: str) -> str:
    return mod if layer(mod) in (0, 4) else ".".join(mod.split(".")[:2])


def edges():
    g = graph()
    return {(mod, d) for mod, deps in g.items() for d, _ in deps if d != mod and d in g}


def test_every_import_points_down_or_within_its_package():
    up = sorted((a, b) for a, b in edges() if layer(b) < layer(a) or (layer(b) == layer(a) and layer(a) in (1, 3)
                                                                       and package(a) != package(b)))
    assert up == []


def test_analyses_import_no_other_analysis():
    bad = sorted((a, b) for a, b in edges() if a.startswith("wrapcli.analyses.") and b.startswith("wrapcli.analyses.")
                 and b != "wrapcli.analyses")
    assert bad == []


def test_analyses_load_no_checkpoint():
    bad = sorted(a for a, b in edges() if a.startswith("wrapcli.analyses.") and b == "wrapcli.models.checkpoint"
                 and a != "wrapcli.analyses.weightdiff")
    assert bad == []


def test_tasks_are_pure_python_below_everything():
    bad = sorted((a, b) for a, b in edges() if a.startswith("wrapcli.tasks") and not
                 (b.startswith("wrapcli.tasks") or b == "wrapcli.core.errors"))
    assert bad == []


def test_no_module_imports_a_private_name():
    private = [(mod, f"{d}.{name}") for mod, deps in graph().items() for d, name in deps
               if name and name.startswith("_") and not name.endswith("__")]
    assert private == []


def find_cycle(out: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``out`` (a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(out.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(out):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_no_import_cycles():
    out: dict[str, set[str]] = {}
    for a, b in edges():
        out.setdefault(a, set()).add(b)
    assert find_cycle(out) is None


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_commands_load_no_model():
    """Commands parse options and print; loading a model (wrapcli's, Hugging Face's or a
    compiled one) is a run's work."""
    import ast

    from import_graph import PACKAGE

    loaders = {"load", "load_checkpoint", "from_pretrained"}
    bad = []
    for path in sorted((PACKAGE / "commands").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in loaders:
                bad.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}")
    assert bad == []


@pytest.mark.parametrize("mod, expected", [("wrapcli.cli", 0), ("wrapcli.commands.eval", 1), ("wrapcli.runs.revive", 2),
                                           ("wrapcli.analyses.pruning", 3), ("wrapcli.compiled.model", 3),
                                           ("wrapcli.models.checkpoint", 4), ("wrapcli.tasks.vocab", 5),
                                           ("wrapcli.core.errors", 6)])
def test_the_layers_are_read_from_the_package(mod, expected):
    assert mod in graph() and layer(mod) == expected


def test_the_tests_architectures_are_the_ones_wrapcli_reads():
    from wrapcli.models.adapters import LAYOUTS

    from models import ARCHS

    assert sorted(ARCHS) == sorted(LAYOUTS)
