"""Every command driven through the CLI, its JSON parsed; bad input -> one line, exit 1;
usage errors -> exit 2."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wrapcli.cli import app

from cli import run, runner

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ["--preset", "smoke", "--steps", "6", "--eval-every", "3", "--eval-size", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def pt(tmp_path_factory):
    d = tmp_path_factory.mktemp("pt")
    run("train", *SMOKE, "--task", "count", "--prior", "a=0.9,b=0.1", "-o", d / "pt.safetensors",
        "--log", d / "log.json", "-q")
    return d / "pt.safetensors"


@pytest.mark.parametrize("command", [[], ["compare"], ["revive"]])
def test_help_imports_no_torch(command):
    """--help is instant because torch and transformers load only inside command bodies:
    run --help itself and look at what it imported."""
    code = ("import sys\nfrom wrapcli.cli import entry\ncode = entry(sys.argv[1:])\n"
            "print('TORCH' if 'torch' in sys.modules or 'transformers' in sys.modules else 'NONE', code)")
    out = subprocess.run([sys.executable, "-c", code, *command, "--help"], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout and out.stdout.strip().splitlines()[-1] == "NONE 0", out.stdout[-300:]


def test_the_command_reference_is_current():
    from wrapcli.clidoc import markdown

    assert (ROOT / "docs" / "cli.md").read_text() == markdown(), "run: python -m wrapcli.clidoc > docs/cli.md"


def _commands() -> list[str]:
    from wrapcli.cli import app

    return sorted(c.name for c in app.registered_commands)  # from the app: a new command is checked too


@pytest.mark.parametrize("command", _commands())
def test_every_help_ends_with_an_example(command):
    out = run(command, "--help").output
    assert "Example" in out and f"wrapcli {command}" in out.split("Example")[-1]


def test_train_writes_checkpoint_and_log(pt):
    log = json.loads((pt.parent / "log.json").read_text())
    assert log["schema"] == "wrapcli.train" and log["seed"] == 0
    results = log["results"]
    assert results["train"]["steps"] == 6 and [e["step"] for e in results["log"]] == [3, 6]
    assert set(results["final_eval"]) == {"count:a", "count:b"}
    from wrapcli.models import checkpoint

    ck = checkpoint.load(pt)
    assert ck.lineage[0]["kind"] == "train" and ck.lineage[0]["steps"] == 6
    assert ck.task["prior"] == {"a": 0.9, "b": 0.1} and ck.task["text_len"] == 48
    assert not Path(f"{pt}.state").exists()  # removed once the run finished


def test_eval_json(pt, tmp_path):
    res = run("eval", pt, "--task", "count:a", "--task", "index:b", "--eval-size", "40", "--json", "-q")
    report = json.loads(res.stdout)
    assert report["schema"] == "wrapcli.eval"
    assert report["inputs"][0]["sha256"] and report["results"]["n"] == 40
    tasks = report["results"]["tasks"]
    assert set(tasks["count:a"]) == {"natural", "C_Te=0", "C_Te=1"}
    row = tasks["count:a"]["natural"]
    assert 0 <= row["accuracy"] <= 1 and row["n"] == 40
    assert sum(v["n"] for v in row["per_answer"].values()) == 40
    # accuracy is the per-answer accuracies weighted by their counts
    weighted = sum(v["n"] * v["accuracy"] for v in row["per_answer"].values()) / 40
    assert weighted == pytest.approx(row["accuracy"])
    run("eval", pt, "--eval-size", "20", "-o", tmp_path / "e.json", "-q")
    assert json.loads((tmp_path / "e.json").read_text())["results"]["tasks"]


def test_eval_matches_an_independent_forward(pt):
    """Recompute count:a accuracy with HF's plain forward over full rows."""
    import torch

    from wrapcli.models import checkpoint
    from wrapcli.tasks.sequences import eval_batch
    from wrapcli.tasks.spec import Component

    res = json.loads(run("eval", pt, "--task", "count:a", "--eval-size", "64", "--precision", "fp32", "--json", "-q").stdout)
    assert res["results"]["precision"] == "fp32"
    ck = checkpoint.load(pt)
    batch = eval_batch(ck.task_spec().replace(seed=0), Component("count", "a"), 64, None)
    with torch.no_grad():
        logits = ck.model(input_ids=torch.as_tensor(batch.tokens)).logits
    acc = (logits[:, -3].argmax(-1).numpy() == batch.tokens[:, -2]).mean()
    assert res["results"]["tasks"]["count:a"]["natural"]["accuracy"] == pytest.approx(acc)


def test_bf16_evaluation_agrees_with_fp32_and_leaves_the_model_as_it_was(pt):
    """--precision bf16 runs the training kernels (eager attention, fused GELU) under
    autocast; predictions may differ only where two logits tie within bf16 rounding."""
    from wrapcli.models import checkpoint
    from wrapcli.tasks.evaluation import predict
    from wrapcli.tasks.sequences import eval_batch
    from wrapcli.tasks.spec import Component

    ck = checkpoint.load(pt)
    tokens = eval_batch(ck.task_spec().replace(seed=0), Component("count", "a"), 512, None).tokens
    exact = predict(ck.model, tokens, precision="fp32")
    fast = predict(ck.model, tokens, precision="bf16")
    assert (exact == fast).mean() >= 0.97
    assert ck.model.config._attn_implementation == "sdpa"
    assert type(ck.model.transformer.h[0].mlp.act).__name__ == "NewGELUActivation"
    res = json.loads(run("eval", pt, "--task", "count:a", "--eval-size", "64", "--precision", "bf16", "--json", "-q").stdout)
    assert res["results"]["precision"] == "bf16"


def test_export_round_trip(pt, tmp_path):
    run("export", pt, tmp_path / "hf", "-q")
    a = json.loads(run("eval", pt, "--eval-size", "30", "--json", "-q").stdout)["results"]["tasks"]
    b = json.loads(run("eval", tmp_path / "hf", "--eval-size", "30", "--json", "-q").stdout)["results"]["tasks"]
    assert a == b


def test_unwritable_output_keeps_existing_file(pt, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    target = ro / "e.json"
    target.write_text("keep me")
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        res = runner.invoke(app, ["eval", str(pt), "--eval-size", "10", "-o", str(target)])
        assert res.exit_code == 1 and "not writable" in res.stderr
        assert target.read_text() == "keep me"
    finally:
        ro.chmod(0o700)


def test_failed_run_leaves_existing_checkpoint(pt, tmp_path):
    target = tmp_path / "pt.safetensors"
    target.write_bytes(pt.read_bytes())
    before = target.read_bytes()
    res = runner.invoke(app, ["train", *SMOKE, "--task", "count", "--prior", "a=2", "-o", str(target)])
    assert res.exit_code == 2  # the prior is refused before any work
    assert target.read_bytes() == before


def test_usage_errors_exit_2(pt):
    assert runner.invoke(app, ["eval", str(pt), "--no-such-flag"]).exit_code == 2
    assert runner.invoke(app, ["train"]).exit_code == 2  # -o is required
    assert runner.invoke(app, ["frobnicate"]).exit_code == 2


def test_kill_9_then_resume_matches_uninterrupted(tmp_path):
    """A real SIGKILL mid-run, then --resume, finishes with bit-identical weights."""
    import torch

    from wrapcli.models import checkpoint

    args = ["--preset", "smoke", "--steps", "300", "--batch-size", "8", "--eval-every", "100",
            "--eval-size", "8", "--save-every", "10", "--device", "cpu", "-q"]
    cmd = [sys.executable, "-m", "wrapcli", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cmd, "-o", str(tmp_path / "a.safetensors")], check=True, env=env)

    out = tmp_path / "b.safetensors"
    proc = subprocess.Popen([*cmd, "-o", str(out)], env=env)
    state = Path(f"{out}.state")
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists() and not out.exists(), "the run finished before it could be killed"
    subprocess.run([*cmd, "-o", str(out), "--resume"], check=True, env=env)
    a, b = checkpoint.load(tmp_path / "a.safetensors"), checkpoint.load(out)
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name


def test_train_a_llama_through_the_cli(tmp_path):
    from wrapcli.models import checkpoint

    run("train", "--arch", "llama", "--preset", "smoke", "--steps", "3", "--eval-size", "8", "--device", "cpu", "-q",
        "-o", tmp_path / "l.safetensors")
    ck = checkpoint.load(tmp_path / "l.safetensors")
    assert ck.config.model_type == "llama" and ck.lineage[0]["steps"] == 3


def test_help_reads_as_a_user_sees_it():
    """``wrapcli --help`` and every command's --help, as the terminal shows them: no type
    on a flag (typer's ``<bool>``), usage lines in the conventional form (``CKPT``, not
    ``{ckpt}``), and every summary in ``wrapcli --help`` a whole sentence on its own."""
    import typer

    from wrapcli.cli import app, command_tree

    names = sorted(typer.main.get_command(app).commands)  # from the app: a new command is read too
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert top.exit_code == 0 and "<bool>" not in top.output
    summaries = {}
    for line in top.output.splitlines():
        cells = line.strip("│ ").split(None, 1)
        if cells and cells[0] in names and len(cells) == 2:
            summaries[cells[0]] = cells[1].strip()
    assert sorted(summaries) == names, summaries
    for name, text in summaries.items():
        assert text[-1] in ".?" and text.count(".") + text.count("?") >= 1, (name, text)
        assert text == command_tree().commands[name].short_help, (name, text)  # on one line, whole
    for name in names:
        out = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output
        usage = next(line for line in out.splitlines() if "Usage:" in line)
        assert "<bool>" not in out and "{" not in usage and f"wrapcli {name} [OPTIONS]" in usage, (name, usage)


@pytest.mark.parametrize("old, new, args", [
    ("--n", "--eval-size", ["eval", "{pt}", "--task", "count:a", "{flag}", "8", "-q", "--json"]),
    ("--n", "--eval-size", ["eval", "{pt}", "--task", "count:a", "{flag}=8", "-q", "--json"]),
])
def test_an_old_option_name_works_for_a_release_with_a_note(pt, old, new, args):
    """A renamed option (wrapcli/cli.py RENAMED) is read as its new name, with one note on
    stderr naming both, and gives the same report as the new name."""
    fill = lambda flag: [a.format(pt=pt, flag=flag) for a in args]  # noqa: E731
    before = runner.invoke(args=fill(old))
    after = runner.invoke(args=fill(new))
    assert before.exit_code == 0 and after.exit_code == 0, before.output
    assert before.stderr.strip() == f"wrapcli: note: eval {old} is now {new}; the old name works until the next release"
    a, b = (json.loads(r.stdout)["results"] for r in (before, after))
    assert a == b and a["n"] == 8


def test_every_rename_points_at_an_option_that_exists():
    import typer

    from wrapcli.cli import RENAMED, app

    tree = typer.main.get_command(app)
    for (command, old), new in RENAMED.items():
        opts = {o for p in tree.commands[command].params for o in p.opts}
        assert new in opts and old not in opts, (command, old, new)


def test_one_option_name_takes_one_set_of_values():
    """An option shared by several commands takes the same fixed values in each (the
    --precision vocabulary above all): a name means one thing everywhere (docs/cli.md's
    option-name table is generated from the same walk)."""
    from wrapcli.cli import command_tree
    from wrapcli.clidoc import option_names

    names = option_names(command_tree())
    assert len(names["--precision"]["commands"]) >= 7
    for name, row in names.items():
        assert len(row["choices"]) <= 1, (name, row)
    assert names["--precision"]["choices"] == {("auto", "fp32", "bf16", "fp16")}


@pytest.mark.parametrize("command", [["eval", "{pt}", "--task", "count:a"], ["prune", "{pt}", "--task", "count:a"]])
def test_an_autocast_command_refuses_fp16_in_one_line(pt, command):
    result = runner.invoke(args=[a.format(pt=pt) for a in command] + ["--precision", "fp16", "-q"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("wrapcli: error: --precision fp16: this command computes in fp32 or bf16 "
                                     "(fp16 loads the weights in compare and probe only)")
