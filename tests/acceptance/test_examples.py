"""The study's Makefile (examples/Makefile), run end to end on the smoke preset, so the
wiring of `make demo` and of the paper's further setups cannot rot. The figures are the
smoke model's, meaningless; what is checked is that every step runs and links up."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(out: Path, *targets: str, jobs: int = 1) -> str:
    cmd = ["make", f"-j{jobs}", "-f", str(ROOT / "examples" / "Makefile"), "PRESET=smoke", f"OUT={out}",
           f"WRAPCLI={sys.executable} -m wrapcli", f"PYTHON={sys.executable}", "DEVICE=cpu", "SEEDS=0",
           "REVIVE_SEEDS=1", "MIXES=0.5", "PLOT=1", *targets]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_demo_and_further_setups_run_through_the_makefile(tmp_path):
    out = tmp_path / "runs"
    summary = make(out, "demo")
    for name in ("pt-medium-s0.safetensors", "ft-medium-small-sp0-s0_eval.json", "ft-medium-large-sp0-s0_eval.json",
                 "ft-medium-medium-sp1-s0_eval.json", "revive-medium-large-sp0.json", "revive-medium-large-sp0.png",
                 "prune-medium-small-sp0-s0.png", "probe-medium-large-sp0-s0.json", "audit.md", "audit.json"):
        assert (out / name).exists(), name
    assert "| audited checkpoint |" in summary and "| reverse fine-tune of |" in summary

    again = make(out, "demo")  # nothing changed: only the summary runs
    assert "wrapcli --threads 1 train " in summary  # the smoke demo pretrains, on one pinned thread
    assert " train " not in again and " finetune " not in again and "| pretrained" in again

    make(out, "mixing", "indexer", "jailbreak", "scrft", "randft", jobs=2)
    for name in ("mix-medium-large-m0.5-s0_eval.json", "ix-medium-s0_eval.json", "ixft-medium-large-sp0-s0_eval.json",
                 "jbft-medium-s0_eval.json", "jbprobe-medium-s0.json", "revive-scrft.json",
                 "rft-medium-large-s0_eval.json", "rftprobe-medium-large-s0.json", "revive-rft-medium-large.json"):
        assert (out / name).exists(), name
    tables = subprocess.run([sys.executable, str(ROOT / "examples" / "summarize.py"), str(out)],
                            capture_output=True, text=True, check=True).stdout
    assert "| jailbreak fine-tune (LR) |" in tables and "count2:a natural" in tables
    assert "| randFT fine-tune (prior-LR) |" in tables and "| rft-medium-large |" in tables


def test_demo_shortens_fine_tunes_on_the_cpu_preset_only(tmp_path):
    """`make demo` on the CPU preset fine-tunes and reverse fine-tunes 200 steps and logs
    a fine-tune every 50 (README); other presets keep their own. Dry run: nothing runs."""
    def planned(preset):
        cmd = ["make", "-n", "-f", str(ROOT / "examples" / "Makefile"), f"PRESET={preset}",
               f"OUT={tmp_path / preset}", "demo"]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout

    cpu = planned("cpu")
    for command in ("finetune", "revive"):
        lines = [l for l in cpu.splitlines() if f"wrapcli --threads 1 {command} " in l]  # every job pinned to 1 thread
        assert lines and all("--steps 200" in l for l in lines), (command, lines)
    assert all("--eval-every 50" in l for l in cpu.splitlines() if " finetune " in l)
    assert "|| cp " in cpu and "bases/pt-medium-s0.safetensors" in cpu  # the shipped base, not a pretraining
    smoke = planned("smoke")
    assert "--steps" not in smoke and "--eval-every" not in smoke
