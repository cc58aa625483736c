"""Imports run one way, by package (the graph is read from the source, function-level and
type-only imports included; tests/import_graph.py). The packages, top to bottom:

    cli -> commands/ -> runs/ -> analyses/, compiled/ -> training/, terminal/ -> textdata/
        -> models/ -> report/, verdicts/ -> tasks/ -> core/

A module imports its own package and the packages below its own layer, never a package
above it or a sibling on its layer. A command parses options and prints; a run (runs/)
loads, checks, writes and assembles a report; an analysis (analyses/) is pure: it imports
no other analysis, no run and no command, and loads no checkpoint (the weight diff streams
tensors from the files it compares, so it reads their headers). No module imports another's
private name. No cycles."""

import pytest

from import_graph import PACKAGE, graph

TOP = ("wrapcli.cli", "wrapcli.clidoc", "wrapcli.__main__")
# top to bottom; packages on one line are siblings that may not import each other
LAYERS = (("cli",), ("commands",), ("runs",), ("analyses", "compiled"), ("training", "terminal"), ("textdata",),
          ("models",), ("report", "verdicts"), ("tasks",), ("core",))


def package(mod: str) -> str:
    """The package a module belongs to: ``cli`` for the entry points, ``core`` for the
    package's own ``__init__`` (the version)."""
    if mod in TOP:
        return "cli"
    if mod == "wrapcli":
        return "core"
    return mod.split(".")[1]


def layer(mod: str) -> int:
    """0 = cli, 1 = commands, ... 9 = core (LAYERS)."""
    pkg = package(mod)
    return next(i for i, names in enumerate(LAYERS) if pkg in names)


def edges():
    g = graph()
    return {(mod, d) for mod, deps in g.items() for d, _ in deps if d != mod and d in g}


def test_every_import_points_down_or_within_its_package():
    up = sorted((a, b) for a, b in edges() if package(a) != package(b) and layer(b) <= layer(a))
    assert up == []


def test_every_module_is_in_a_package_of_the_plan():
    """Only the entry points stay flat: the file list shows the plan."""
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("cli", "clidoc") and not p.stem.startswith("__"))
    unplanned = sorted({p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
                       - {name for names in LAYERS for name in names})
    assert flat == [] and unplanned == []


def test_analyses_import_no_other_analysis():
    bad = sorted((a, b) for a, b in edges() if a.startswith("wrapcli.analyses.") and b.startswith("wrapcli.analyses.")
                 and b != "wrapcli.analyses")
    assert bad == []


def test_analyses_load_no_checkpoint():
    bad = sorted(a for a, b in edges() if a.startswith("wrapcli.analyses.") and b == "wrapcli.models.checkpoint")
    assert bad == []


def test_tasks_import_only_tasks_and_core():
    bad = sorted((a, b) for a, b in edges() if a.startswith("wrapcli.tasks") and not
                 (b.startswith("wrapcli.tasks") or b.startswith("wrapcli.core")))
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

    loaders = {"load", "load_checkpoint", "from_pretrained"}
    bad = []
    for path in sorted((PACKAGE / "commands").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in loaders:
                bad.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}")
    assert bad == []


@pytest.mark.parametrize("mod, expected", [("wrapcli.cli", 0), ("wrapcli.commands.eval", 1), ("wrapcli.runs.revive", 2),
                                           ("wrapcli.analyses.pruning", 3), ("wrapcli.compiled.model", 3),
                                           ("wrapcli.training.loop", 4), ("wrapcli.models.checkpoint", 6),
                                           ("wrapcli.tasks.vocab", 8), ("wrapcli.core.errors", 9), ("wrapcli", 9)])
def test_the_layers_are_read_from_the_package(mod, expected):
    assert mod in graph() and layer(mod) == expected


def test_the_tests_architectures_are_the_ones_wrapcli_reads():
    from wrapcli.models.adapters import LAYOUTS

    from models import ARCHS

    assert sorted(ARCHS) == sorted(LAYOUTS)


def test_commands_do_not_decide_what_a_run_decides():
    """A command parses and prints: the kind of model (checkpoint), the compiled models and
    the presets are the runs' to read, so no command imports them."""
    decided = ("wrapcli.models.checkpoint", "wrapcli.compiled", "wrapcli.training.presets")
    bad = sorted((a, b) for a, b in edges() if a.startswith("wrapcli.commands.")
                 and any(b == d or b.startswith(d + ".") for d in decided))
    assert bad == []
