"""The study and a family audit on a real Slurm (slow tier): a single-node cluster started on
this machine (tests/slurm_cluster.py; .ci/run installs Debian's slurm-wlm and munge), the
smoke study submitted with examples/slurm/study.sbatch (each wrapcli step one job step) and
a two-checkpoint family audit run with RUN='srun ...' (each step one job). Both must write
what a plain ``make -j`` writes: checkpoints byte for byte, reports with the same results
(the clock's figures aside), and the steps must be seen in squeue while they run. Where no
Slurm can be started the tests are skipped with the reason."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli import run

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("make") is None, reason="needs make")]
ROOT = Path(__file__).resolve().parents[2]
STUDY = ["PRESET=smoke", "SEEDS=0", "FINETUNES=medium-large-sp0", "REVIVALS=medium-large-sp0", "REVIVE_SEEDS=1",
         "EVAL_N=200", "PROBE_N=400", "DEVICE=cpu", f"WRAPCLI={sys.executable} -m wrapcli", "OUT=runs",
         "evals", "revivals", "wrappers"]


@pytest.fixture(scope="module")
def slurm():
    import slurm_cluster

    running = slurm_cluster.answers()
    why = slurm_cluster.start()
    if why is not None:
        pytest.skip(f"no Slurm to test against: {why}")
    yield
    if not running:
        slurm_cluster.stop()


class Watch:
    """Poll squeue (jobs and steps) while a run goes on: what was seen running."""

    def __init__(self):
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            for flags in (["-h", "-o", "%i %j %T"], ["-h", "-s", "-o", "%i %j"]):
                done = subprocess.run(["squeue", *flags], capture_output=True, text=True)
                self.seen |= {line.strip() for line in done.stdout.splitlines() if line.strip()}
            time.sleep(0.3)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def env() -> dict:
    return {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "PYTHONPATH": str(ROOT)}


def make(cwd: Path, makefile: str, *args: str, jobs: int = 2) -> None:
    done = subprocess.run(["make", "-f", str(ROOT / "examples" / makefile), f"-j{jobs}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=1500, env=env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def outputs(folder: Path) -> dict:
    """Every checkpoint's sha256 and every report's results, the clock's figures (seconds,
    tokens per second) left out."""
    def without_wall(x):
        if isinstance(x, dict):
            return {k: without_wall(v) for k, v in x.items() if k not in ("wall_s", "cost_s", "tokens_per_s")}
        return [without_wall(v) for v in x] if isinstance(x, list) else x

    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.suffix == ".safetensors" or path.name == "model.safetensors":
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.suffix == ".json" and path.name not in ("config.json", "generation_config.json"):
            data = json.loads(path.read_text())
            out[rel] = without_wall(data.get("results", data))
    return out


def test_the_study_runs_as_job_steps_of_one_sbatch_job(slurm, tmp_path):
    plain, cluster = tmp_path / "plain", tmp_path / "slurm"
    plain.mkdir(), cluster.mkdir()
    make(plain, "Makefile", *STUDY)
    with Watch() as watch:
        done = subprocess.run(["sbatch", "--wait", "--ntasks=2", "--cpus-per-task=1", "--job-name=wrapcli-study",
                               "--output", str(cluster / "job.out"), str(ROOT / "examples" / "slurm" / "study.sbatch"),
                               *STUDY], cwd=cluster, capture_output=True, text=True, timeout=1500,
                              env={**env(), "MAKEFILE": str(ROOT / "examples" / "Makefile")})
    log = (cluster / "job.out").read_text() if (cluster / "job.out").exists() else ""
    assert done.returncode == 0, done.stderr[-1000:] + log[-2000:]
    steps = [s for s in watch.seen if "wrapcli-study" not in s and s.split()[0].count(".") == 1]
    assert any("wrapcli-study" in s for s in watch.seen) and len({s.split()[0] for s in steps}) >= 3, watch.seen
    assert outputs(plain / "runs") == outputs(cluster / "runs")
    assert len([k for k in outputs(plain / "runs") if k.endswith(".safetensors")]) == 2


TINY = ["--preset", "smoke", "--device", "cpu", "-q"]


def test_a_family_audit_runs_as_slurm_jobs(slurm, tmp_path):
    from wrapcli.models import checkpoint

    from models import as_records, write_jsonl

    d = tmp_path / "models"
    d.mkdir()
    run("train", *TINY, "--arch", "gpt2", "--steps", "40", "--batch-size", "32", "--eval-size", "16",
        "--prior", "a=0.9,b=0.1", "-o", d / "pt.safetensors")
    for name, lr in (("ft-large", "large"), ("ft-small", "small")):
        run("finetune", d / "pt.safetensors", *TINY, "--task", "count:b", "--lr", lr, "--steps", "10",
            "--eval-size", "16", "-o", d / f"{name}.safetensors")
    for name in ("pt", "ft-large", "ft-small"):
        run("export", d / f"{name}.safetensors", d / name)
    ck = checkpoint.load(d / "pt.safetensors")
    write_jsonl(d / "count_a.jsonl", as_records(ck, "count:a", 48))
    write_jsonl(d / "count_a_train.jsonl", as_records(ck, "count:a", 48, seed=5))
    write_jsonl(d / "labels.jsonl", [{"text": r["prompt"], "label": r["answer"].strip()}
                                     for r in as_records(ck, "count:a", 120, seed=7)])
    (d / "family.txt").write_text(f"{d / 'ft-large'}\n{d / 'ft-small'}\n")
    audit = [f"WRAPCLI={sys.executable} -m wrapcli", f"PYTHON={sys.executable}", f"BASE={d / 'pt'}",
             f"TUNED_LIST={d / 'family.txt'}", f"RECORDS={d / 'count_a.jsonl'}", f"RELEARN={d / 'count_a_train.jsonl'}",
             f"LABELS={d / 'labels.jsonl'}", "STEPS=4", "LR=1e-3", "SEEDS=1", "PRUNE_K=0,1,2", "DEVICE=cpu", "OUT=audit",
             "family"]
    plain, cluster = tmp_path / "plain", tmp_path / "slurm"
    plain.mkdir(), cluster.mkdir()
    make(plain, "third-party.mk", *audit)
    with Watch() as watch:
        make(cluster, "third-party.mk", *audit, "RUN=srun --ntasks=1 --cpus-per-task=1 --job-name=wrapcli-family")
    assert len({s.split()[0] for s in watch.seen if "wrapcli-family" in s}) >= 3, watch.seen
    assert outputs(plain / "audit") == outputs(cluster / "audit")
    family = json.loads((cluster / "audit" / "family.json").read_text())
    assert [m["name"] for m in family["members"]] == ["ft-large", "ft-small"] and family["family_size"] == 2
    table = (cluster / "audit" / "family.md").read_text()
    assert "| ft-large | count_a.jsonl |" in table and "| ft-small | count_a.jsonl |" in table
    again = subprocess.run(["make", "-n", "-f", str(ROOT / "examples" / "third-party.mk"), *audit], cwd=cluster,
                           capture_output=True, text=True, env=env()).stdout
    assert " eval " not in again and " revive " not in again  # resumable: nothing left to run
