"""The study's Makefile (examples/Makefile), run end to end on the smoke preset, so the
wiring of `make demo` and of the paper's further setups cannot rot. The figures are the
smoke model's, meaningless; what is checked is that every step runs and links up."""

import json
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
           "REVIVE_SEEDS=1", "MIXES=0.5", "EVAL_N=200", "PROBE_N=400", "PLOT=1", *targets]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow  # minutes: the slow tier, which CI runs
def test_demo_runs_through_the_makefile(tmp_path):
    out = tmp_path / "runs"
    summary = make(out, "demo")
    for name in ("pt-low-s0.safetensors", "scr-b.safetensors", "ft-low-medium-sp1-s0_eval.json",
                 "ft-low-large-sp0-s0_eval.json", "revive-low-medium-sp1.json", "revive-low-large-sp0.png",
                 "prune-low-medium-sp1-s0.png", "probe-low-large-sp0-s0.json", "audit.md", "audit.json"):
        assert (out / name).exists(), name
    assert "| audited checkpoint |" in summary and "| reverse fine-tune of |" in summary
    assert "control:scr-b" in summary  # both revivals ran against Scr.+FT as well as scratch

    again = make(out, "demo")  # nothing changed: only the summary runs
    assert "wrapcli --threads 1 train " in summary  # the smoke demo pretrains, on one pinned thread
    assert " train " not in again and " finetune " not in again and "| pretrained" in again


@pytest.mark.slow  # minutes: the slow tier, which CI runs
def test_every_row_of_the_reproduction_report_runs_through_the_makefile(tmp_path):
    """`make -f examples/Makefile reproduction` on the smoke preset: the main rows and
    further setups in OUT, the low-prior rows with neuron pruning in OUT-low, demo-study
    in OUT-demo, the compiled rows in OUT/compiled (where the compile extra is
    installed), every summary printed."""
    import importlib.util

    out = tmp_path / "runs"
    compiled = importlib.util.find_spec("tracr") is not None  # the compiled rows need the compile extra
    tables = make(out, "reproduction", *([] if compiled else ["REPRO_COMPILED="]), jobs=2)
    for name in ("mix-medium-large-m0.5-s0_eval.json", "ix-medium-s0_eval.json", "ixft-medium-large-sp0-s0_eval.json",
                 "jbft-medium-s0_eval.json", "jbprobe-medium-s0.json", "revive-scrft.json",
                 "rft-medium-large-s0_eval.json", "rftprobe-medium-large-s0.json", "revive-rft-medium-large.json",
                 "rft-medium-medium-s0_eval.json", "ixft-medium-medium-sp1-s0_eval.json", "ft-high-small-sp0-s0_eval.json",
                 "revive-medium-medium-sp0.json", "prune-medium-large-sp0-s0.json", "audit.md",
                 "bft-large-sp0-s0_eval.json", "bprune-neuron-small-sp0-s0.json", "bprobe-large-sp0-s0.json"):
        assert (out / name).exists(), name
    low, demo_study = Path(f"{out}-low"), Path(f"{out}-demo")
    assert json.loads((low / "prune-low-medium-sp1-s0.json").read_text())["results"]["unit"] == "neuron"
    assert (low / "revive-low-medium-sp1.json").exists() and (low / "scr-b.safetensors").exists()
    assert (demo_study / "revive-low-large-sp0.json").exists() and (demo_study / "audit.json").exists()
    assert "| jailbreak fine-tune (LR) |" in tables and "count2:a natural" in tables
    assert "| randFT fine-tune (prior-LR) |" in tables and "| rft-medium-large |" in tables
    if compiled:  # compile, fine-tune with and without the feature, evaluate, prune, probe, revive, compare
        for name in ("counter.safetensors", "counter_eval.json", "ft-0.01-sp1-s0_eval.json", "ft-0.1-sp0-s0_train.json",
                     "prune-0.001-sp1-s0.json", "nprune-0.0001-sp1-s0.json", "probe-0.01-sp0-s0.json",
                     "revive-0.01-sp0.json", "audit.md"):
            assert (out / "compiled" / name).exists(), name
        assert "| attention from the answer position (LR-C_Tr) |" in tables and "| 0.01-sp1 | 1 |" in tables
        assert "| weight | 5 |" in tables and "| audited checkpoint | task | verdict |" in tables


def test_demo_runs_the_demo_preset_from_the_shipped_models(tmp_path):
    """`make demo` (README): the demo preset, both models copied from examples/bases/ (no
    pretraining), every job on one pinned thread, three reFT seeds against scratch and
    Scr.+FT, pruning by rows (the paper's unit); PRESET=smoke pretrains both instead. Dry run: nothing runs."""
    def planned(*args):
        cmd = ["make", "-n", "-f", str(ROOT / "examples" / "Makefile"), f"OUT={tmp_path}", *args, "demo"]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout

    demo = planned()
    jobs = [l for l in demo.splitlines() if "wrapcli " in l and not l.startswith("make")]
    assert jobs and all("wrapcli --threads 1 " in l for l in jobs)
    copies = [l for l in demo.splitlines() if "|| cp " in l]  # (a dry run cannot see the copies, so it plans trains)
    assert "bases/demo-pt-low-s0.safetensors" in copies[0] and "bases/demo-scr-b-s0.safetensors" in copies[1]
    for command in ("finetune", "revive"):
        lines = [l for l in jobs if f" {command} " in l]
        assert lines and all("--preset demo" in l for l in lines), (command, lines)
    revive = demo[demo.index(" revive "):]
    assert "--scratch --control " in revive and "scr-b.safetensors" in revive and "--seeds 3" in revive
    assert "--unit row" in demo
    smoke = planned("PRESET=smoke")
    assert "--preset smoke" in smoke and "train --preset smoke --task count:b" in smoke


def test_reproduction_plans_the_cpu_preset_from_the_shipped_base(tmp_path):
    """Dry run of `reproduction` at its default preset: the CPU preset's jobs, the shipped
    medium-prior base fine-tuned (not a new pretraining), demo-study on the demo preset,
    the compiled rows at the paper's 10,000 steps."""
    cmd = ["make", "-n", "-f", str(ROOT / "examples" / "Makefile"), f"OUT={tmp_path}/cpu", "reproduction"]
    plan = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout.replace("\\\n", " ")
    jobs = [l for l in plan.splitlines() if "wrapcli " in l and not l.startswith("make")]
    bft = [l for l in jobs if "/bft-" in l and " finetune " in l]
    assert bft and all("examples/bases/pt-medium-s0.safetensors" in l and "--preset cpu" in l for l in bft)
    assert any(" prune " in l and "--unit neuron" in l and "/cpu-low/" in l for l in jobs)
    assert any(" revive " in l and "--preset demo" in l and "/cpu-demo/" in l for l in jobs)
    assert any(" finetune " in l and "/cpu/compiled/counter.safetensors" in l and "--steps 10000" in l for l in jobs)

