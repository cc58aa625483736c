"""The documentation stands alone: every relative link in README.md, REPRODUCTION.md and
docs/ resolves to a file of the repository, and nothing sends a reader outside it."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "REPRODUCTION.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_nothing_points_outside_the_repository():
    files = [*PAGES, *ROOT.joinpath("wrapcli").rglob("*.py"), *ROOT.joinpath("examples").iterdir()]
    for f in files:
        if f.is_file():
            assert not re.search(r"\.\./shared|PROTOCOL\.md|DESIGN\.md|STYLE\.md", f.read_text()), f


def test_the_readme_is_short_and_says_its_terms_first():
    """README.md is for a user's first minutes: at most 150 lines, the terms it uses named
    near the top (lab notes and timings live in docs/)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, len(lines)
    assert any(line.startswith("Terms:") for line in lines[:20])
