"""Who imports whom inside wrapcli, read from the source (function-level imports too).

Run: python tests/import_graph.py        # one line per module: what it imports
tests/unit/test_layers.py checks the layering rules over this graph."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wrapcli"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for every ``wrapcli`` import in ``path``; name is None for
    ``import wrapcli.x`` and the imported name for ``from wrapcli.x import name``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wrapcli"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                    (PACKAGE.parent / Path(*sub.split("."))).is_dir()
                out.append((sub, None) if is_module else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.startswith("wrapcli")]
    return out


def graph() -> dict[str, list[tuple[str, str | None]]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def main() -> None:
    for mod, deps in graph().items():
        targets = sorted({d for d, _ in deps if d != mod})
        print(f"{mod}: {', '.join(t.removeprefix('wrapcli.') for t in targets) or '-'}")


if __name__ == "__main__":
    sys.exit(main())
