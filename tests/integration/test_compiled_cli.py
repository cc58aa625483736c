"""finetune, prune, revive and eval on a compiled (Tracr-architecture) checkpoint through
the CLI, without Tracr: reports validated against wrapcli/report/schema.py (conftest), lineage
carried on, and the flags that do not apply refused with one line."""

import json

import pytest

from wrapcli.compiled import model as compiled
from wrapcli.models import checkpoint
from wrapcli.models.lineage import lineage_entry

from cli import one_line_error, run
from models import tiny_compiled

COMPILE_ENTRY = lineage_entry("compile", None, "counter", 0, {"count:a": {"natural": {"accuracy": 0.5}}})


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    path = tmp_path_factory.mktemp("compiled") / "counter.safetensors"
    checkpoint.save_compiled(path, tiny_compiled(1), lineage=[COMPILE_ENTRY])
    return path


def report(path):
    return json.loads(path.read_text())["results"]


def test_finetune_prune_revive_and_eval_a_compiled_counter(counter, tmp_path):
    ft, log = tmp_path / "ft.safetensors", tmp_path / "ft.json"
    run("--threads", "1", "finetune", counter, "--task", "count:b", "--lr", "0.01", "--spurious", "1.0",
        "--steps", "30", "--eval-every", "10", "--eval-size", "64", "--seed", "2", "-q", "--log", log, "-o", ft)
    r = report(log)
    assert r["train"]["optimizer"] == "sgd" and r["train"]["momentum"] == 0.9 and r["train"]["lr"] == 0.01
    assert [e["step"] for e in r["log"]] == [0, 10, 20, 30] and r["task"]["spurious"] == 1.0
    assert set(r["final_eval"]) == {"count:a", "count:b"} and set(r["final_eval"]["count:b"]) == {"natural", "C_Te=0", "C_Te=1"}
    lineage = json.loads(checkpoint.read_metadata(ft)["lineage"])
    assert [e["kind"] for e in lineage] == ["compile", "finetune"] and lineage[1]["lr"] == 0.01
    assert compiled.load_checkpoint(ft).spec == compiled.load_checkpoint(counter).spec

    out = tmp_path / "prune.json"
    run("prune", ft, "--task", "count:a", "--also", "count:b", "--unit", "weight", "--k", "0,1,3",
        "--eval-size", "64", "-q", "-o", out)
    p = report(out)
    assert [row["k"] for row in p["sweep"]] == [0, 1, 3] and p["unit"] == "weight" and len(p["pruned"]) == 3
    assert all(u["kind"].startswith("weight:") for u in p["pruned"])
    assert [u["score"] for u in p["pruned"]] == sorted((u["score"] for u in p["pruned"]), reverse=True)

    run("prune", ft, "--task", "count:a", "--unit", "neuron", "--k", "0,2", "--eval-size", "64", "-q",
        "-o", tmp_path / "neurons.json")
    p = report(tmp_path / "neurons.json")
    assert p["unit"] == "neuron" and p["n_units"] == 2 * 7 and [u["kind"] for u in p["pruned"]] == ["neuron"] * 2

    # reverting the top weights to the compiled model: those weights hold the counter's values again
    run("prune", ft, "--task", "count:a", "--unit", "weight", "--revert-to", counter, "--k", "0,2", "--eval-size", "64",
        "-q", "-o", tmp_path / "revert.json")
    p = report(tmp_path / "revert.json")
    assert p["operation"] == "revert" and p["revert_to"]["path"] == str(counter)
    reverted = compiled.load_checkpoint(ft)
    from wrapcli.compiled import training as ct

    base = dict(compiled.load_checkpoint(counter).named_parameters())
    units = [{"param": u["kind"].split(":", 1)[1], "index": u["index"]} for u in p["pruned"][:2]]
    ct.zero(reverted, units, base)
    params = dict(reverted.named_parameters())
    for u in units:
        assert params[u["param"]].reshape(-1)[u["index"]] == base[u["param"]].reshape(-1)[u["index"]]

    out = tmp_path / "revive.json"
    run("--threads", "1", "revive", ft, "--task", "count:a", "--scratch", "--seeds", "2", "--steps", "20",
        "--eval-size", "64", "-q", "-o", out)
    v = report(out)
    assert [m["name"] for m in v["models"]] == ["revived", "scratch"] and v["seeds"] == [0, 1]
    assert v["lr"] == pytest.approx(0.001) and "fine-tuning LR" in v["lr_source"]  # the fine-tune's / 10
    assert v["threshold"] == pytest.approx(0.45)  # 0.9 x the compile entry's accuracy
    assert all(len(c) == len(v["eval_steps"]) for m in v["models"] for c in m["accuracy"]["per_seed"])

    out = tmp_path / "probe.json"
    run("probe", ft, "--target", "count:a", "--reference", counter, "--eval-size", "200", "--random-inits", "2", "-q", "-o", out)
    pr = report(out)
    assert [l["hook"] for l in pr["layers"]] == ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert all("reference" in l and len(l["random_init"]["per_init"]) == 2 for l in pr["layers"])

    out = tmp_path / "audit.json"
    md = tmp_path / "audit.md"
    run("compare", counter, ft, "--task", "count:a", "--task", "count:b", "--eval-size", "64",
        *[x for f in ("prune.json", "probe.json", "revive.json") for x in ("--reports", tmp_path / f)],
        "-q", "--markdown", md, "-o", out)
    audit = report(out)
    verdicts = audit["verdicts"][str(ft)]
    assert [v["task"] for v in verdicts] == ["count:a", "count:b"] and md.read_text().startswith("#")
    kinds = {c["kind"] for c in verdicts[0]["criteria"]}  # count:a: every report is evidence for it
    assert kinds == {"behaviour", "prune", "probe", "revive"} and audit["weights"][0]["changed_tensors"]
    assert {c["kind"] for c in verdicts[1]["criteria"]} == {"behaviour"}  # count:b: none is
    assert [r["hook"] for r in audit["representations"][str(ft)]][0] == "hook_embed"

    out = tmp_path / "eval.json"
    run("eval", ft, "--task", "count:a", "--eval-size", "64", "-q", "-o", out)
    att = report(out)["attention"]
    assert set(att) == {"natural", "C_Te=0", "C_Te=1"} and len(att["natural"]) == 4  # 2 layers x 2 heads
    assert all(sum(row[t] for t in ("BOS", "a", "b", "c")) == pytest.approx(1.0, abs=1e-4) for row in att["natural"])


def test_the_same_fine_tune_twice_gives_the_same_bits(counter, tmp_path):
    outs = [tmp_path / f"ft{i}.safetensors" for i in range(2)]
    for out in outs:
        run("--threads", "1", "finetune", counter, "--task", "count:b", "--lr", "medium", "--steps", "15",
            "--eval-every", "15", "--eval-size", "32", "-q", "-o", out)
    a, b = (compiled.load_checkpoint(o).state_dict() for o in outs)
    assert all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("args, message", [
    (["prune", "--task", "count:a", "--unit", "head"], "pruned by single weights or MLP neurons"),
    (["finetune", "--task", "count:b", "--mix", "0.5", "-o", "x.safetensors"], "--mix: not for compiled"),
    (["finetune", "--task", "index:b", "-o", "x.safetensors"], "a compiled counter takes count:a"),
    (["finetune", "--task", "count:b", "--preset", "paper", "-o", "x.safetensors"], "--preset: not for compiled"),
    (["finetune", "--task", "count:b", "--device", "cuda", "-o", "x.safetensors"], "--device: not for compiled"),
    (["finetune", "--task", "count:b", "--lr", "fast", "-o", "x.safetensors"], "--lr 'fast'"),
    (["revive", "--task", "count:a", "--control", "{ckpt}"], "against --scratch"),
    (["compare", "{hf}", "--task", "count:a"], "only beside other compiled ones"),
    (["compare", "{ckpt}", "--task", "count:a", "--precision", "bf16"], "compared in fp32"),
    (["probe", "--target", "count:a", "--prompt", "count:b"], "probed on --target count:X"),
])
def test_what_does_not_apply_to_a_compiled_model_is_refused(counter, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    command, *rest = args
    from models import tiny_hf

    tiny_hf().save_pretrained(tmp_path / "hf")
    one_line_error(run(command, counter, *[a.format(ckpt=counter, hf=tmp_path / "hf") for a in rest], code=2),
                   message, code=2)
    assert not (tmp_path / "x.safetensors").exists()


def test_revival_progress_counts_every_seed_and_model_in_turn(chain, counter):
    """The runs report one growing step count over seeds and models (the progress bar's
    total is seeds x models x steps), for a built-in model and a compiled one."""
    from wrapcli.runs import compiled as compiled_runs
    from wrapcli.runs import revive as run
    from wrapcli.training import presets

    seen = []
    run.revive(ckpt_path=chain / "ft.safetensors", task="count:a", scratch=True, preset=presets.get("smoke"),
               steps=3, seeds=2, eval_size=8, on_progress=lambda step, metrics: seen.append(step))
    assert seen == list(range(1, 2 * 2 * 3 + 1))
    seen.clear()
    compiled_runs.revive(ckpt_path=counter, task="count:a", scratch=True, lr="0.01", seeds=2, threshold=None,
                         recipe_args={"steps": 3, "eval_size": 8}, on_progress=lambda step, metrics: seen.append(step))
    assert seen == list(range(1, 2 * 2 * 3 + 1))


def test_a_compiled_checkpoint_evaluates_and_prunes_with_no_jax(counter, tmp_path):
    """Using a compiled checkpoint needs no compile extra: with jax, jaxlib, haiku and tracr
    made unimportable, eval and prune still run."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "for name in ('jax', 'jaxlib', 'haiku', 'tracr'):\n"
        "    sys.modules[name] = None  # import fails\n"
        "from wrapcli.cli import entry\n"
        f"assert entry(['eval', {str(counter)!r}, '--task', 'count:a', '--eval-size', '32', '-q',"
        f" '-o', {str(tmp_path / 'e.json')!r}]) == 0\n"
        f"assert entry(['prune', {str(counter)!r}, '--task', 'count:a', '--unit', 'weight', '--k', '0,1',"
        f" '--eval-size', '32', '-q', '-o', {str(tmp_path / 'p.json')!r}]) == 0\n"
        "assert not any(m.split('.')[0] in ('jax', 'tracr', 'haiku') for m, v in sys.modules.items() if v is not None)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert report(tmp_path / "p.json")["sweep"][1]["k"] == 1
