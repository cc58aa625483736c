import os
import sys
from pathlib import Path

# The helpers (cli.py, models.py, truth.py) live here, beside the tiers that use them:
# unit/ (pure functions), integration/ (CLI round trips, HF equivalence, bad input),
# acceptance/ (Makefile study, reproducibility, torchrun, long runs; docs/testing.md).
sys.path.insert(0, str(Path(__file__).parent))

# Tests are offline and must not touch a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Every report any command writes during the tests (subprocesses included) is checked
# against wrapcli/report/schema.py; a departure fails the command that wrote it.
os.environ["WRAPCLI_VALIDATE_REPORTS"] = "1"


import pytest  # noqa: E402

TINY = ["--preset", "smoke", "--device", "cpu", "-q"]


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    """pt.safetensors (smoke pretraining, prior a=0.9,b=0.1) and ft.safetensors (fine-tuned
    to count:b at the large LR with spurious and mixed data), made through the CLI."""
    from cli import run

    d = tmp_path_factory.mktemp("chain")
    run("train", *TINY, "--steps", "6", "--eval-size", "16", "--prior", "a=0.9,b=0.1", "-o", d / "pt.safetensors")
    run("finetune", d / "pt.safetensors", *TINY, "--task", "count:b", "--lr", "large", "--steps", "6",
        "--spurious", "0.5", "--mix", "0.5", "--eval-size", "16", "--log", d / "ft.json", "-o", d / "ft.safetensors")
    return d
