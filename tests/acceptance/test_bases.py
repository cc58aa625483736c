"""The shipped pretrained bases (examples/bases/) are what their recipe in
examples/Makefile makes: same command in the lineage, same time stamp, the sha256 in
SHA256SUMS, and the accuracy the recipe promises, re-measured here."""

import hashlib
import shlex
import subprocess
from pathlib import Path

import pytest

from wrapcli.models import checkpoint

ROOT = Path(__file__).resolve().parents[2]
BASES = ROOT / "examples" / "bases"


def recipe(tmp_path, name: str) -> tuple[dict, list[str]]:
    """The environment and wrapcli arguments `make bases` runs for ``name``."""
    out = subprocess.run(["make", "-n", "-s", "-f", "examples/Makefile", "bases", f"OUT={tmp_path}", "WRAPCLI=wrapcli"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.replace("\\\n", " ").splitlines() if f"-o {name}" in l)
    words = shlex.split(line.split("&&", 1)[1])
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-") and words.index(w) < words.index("wrapcli"))
    return env, words[words.index("wrapcli"):]


def sums() -> dict[str, str]:
    return {name: sha for sha, name in (l.split() for l in (BASES / "SHA256SUMS").read_text().splitlines() if l.strip())}


@pytest.mark.parametrize("name", sorted(sums()))
def test_a_shipped_base_is_what_its_recipe_makes(tmp_path, name):
    path = BASES / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sums()[name]
    env, command = recipe(tmp_path, name)
    (step,) = checkpoint.load(path).lineage
    assert step["command"] == command and step["kind"] == "train" and step["precision"] == "fp32"
    assert step["created"].startswith("2026-") and env["SOURCE_DATE_EPOCH"] == "1795700000"
    assert step["steps"] == int(command[command.index("--steps") + 1])


def test_the_medium_prior_base_counts_b_as_the_papers_does():
    """docs/protocol.md: the paper's medium-prior base counts b at 99.9%; ours must reach 95%
    (and a 99%), measured afresh on 1,000 examples per operand."""
    from wrapcli.core.stats import wilson
    from wrapcli.tasks.evaluation import evaluate

    ck = checkpoint.load(BASES / "pt-medium-s0.safetensors")
    scores = evaluate(ck.model, ck.task_spec(), 1000, settings=("natural",))
    for task, floor in (("count:a", 0.99), ("count:b", 0.95)):
        s = scores[task]["natural"]
        assert s["accuracy"] >= floor, (task, s)
        assert wilson(round(s["accuracy"] * s["n"]), s["n"])[0] > floor - 0.02


def test_the_demo_bases_are_in_the_papers_low_prior_regime():
    """The demo's base counts a (>= 98%) but not b: the paper's low-prior base counts b at
    27.1%, near the majority answer; the Scr.+FT control counts b (>= 95%). 1,000
    examples per operand, measured afresh."""
    from wrapcli.tasks.evaluation import evaluate

    def natural(name):
        ck = checkpoint.load(BASES / name)
        return {t: s["natural"] for t, s in evaluate(ck.model, ck.task_spec(), 1000, settings=("natural",)).items()}

    base = natural("demo-pt-low-s0.safetensors")
    assert base["count:a"]["accuracy"] >= 0.98 and base["count:b"]["accuracy"] < 0.4, base
    control = checkpoint.load(BASES / "demo-scr-b-s0.safetensors")
    assert control.task_spec().components[0].operand == "b"
    assert natural("demo-scr-b-s0.safetensors")["count:b"]["accuracy"] >= 0.95
