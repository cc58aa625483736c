"""Broken models and absurd settings are refused with one line naming the problem, and no
file is changed. One table of cases, as tracr keeps its test cases; the clash of outputs
with inputs is in tests/test_outputs.py."""

import hashlib
import json

import pytest
import torch

from wrapcli import checkpoint
from wrapcli.cli import app

from cli import runner
from models import tiny_hf

TINY = ["--preset", "smoke", "--device", "cpu", "-q"]


def snapshot(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def broken(chain, tmp_path_factory):
    """nan.safetensors (every weight NaN), inf1.safetensors (one Inf), hf-missing/ (an HF
    directory with a tensor left out of its weights file)."""
    from safetensors.torch import load_file, save_file

    d = tmp_path_factory.mktemp("broken")
    ck = checkpoint.load(chain / "ft.safetensors")
    with torch.no_grad():
        for p in ck.model.parameters():
            p.fill_(float("nan"))
    checkpoint.save(d / "nan.safetensors", ck.model, vocab=ck.vocab, task=ck.task, lineage=ck.lineage)
    ck = checkpoint.load(chain / "ft.safetensors")
    with torch.no_grad():
        next(iter(ck.model.parameters())).view(-1)[3] = float("inf")
    checkpoint.save(d / "inf1.safetensors", ck.model, vocab=ck.vocab, task=ck.task, lineage=ck.lineage)
    tiny_hf("gpt2").save_pretrained(d / "hf-missing")
    weights = d / "hf-missing" / "model.safetensors"
    tensors = load_file(weights)
    tensors.pop("transformer.h.1.mlp.c_fc.weight")
    save_file(tensors, weights, metadata={"format": "pt"})
    return d


# (arguments, exit code, words the one-line error must contain); {pt} {ft} {nan} {inf1} {hf} are filled in
CASES = [
    (["eval", "{nan}", "--n", "8"], 1, "non-finite"),
    (["eval", "{inf1}", "--n", "8"], 1, "1 non-finite"),
    (["finetune", "{nan}", *TINY, "--task", "count:b", "--steps", "2", "-o", "{d}/o.safetensors"], 1, "non-finite"),
    (["prune", "{nan}", "--task", "count:a", "--k", "0,1", "-q"], 1, "non-finite"),
    (["revive", "{nan}", "--task", "count:a", *TINY, "--steps", "2"], 1, "non-finite"),
    (["compare", "{pt}", "{nan}", "--task", "count:a", "--n", "8", "-q"], 1, "non-finite"),
    (["probe", "{nan}", "--target", "count:a", "--n", "40", "-q"], 1, "non-finite"),
    (["eval", "{hf}", "--n", "8"], 1, "transformer.h.1.mlp.c_fc.weight"),
    (["finetune", "{pt}", *TINY, "--task", "count:b", "--lr", "inf", "-o", "{d}/o.safetensors"], 1, "finite"),
    (["finetune", "{pt}", *TINY, "--task", "count:b", "--lr", "1e9", "-o", "{d}/o.safetensors"], 1, "above"),
    (["revive", "{ft}", "--task", "count:a", *TINY, "--lr", "-1e-3"], 1, "finite and > 0"),
    (["train", *TINY, "--prior", "a=0.9,b=0.1,b=0.1", "-o", "{d}/o.safetensors"], 1, "given twice"),
    (["train", *TINY, "--task", "count:", "-o", "{d}/o.safetensors"], 1, "empty operand"),
    (["prune", "{ft}", "--task", "count:a", "--k", "1,1,0", "-q"], 2, "strictly increasing"),
    (["prune", "{ft}", "--task", "count:a", "--k", "two", "-q"], 2, "comma-separated integers"),
]


@pytest.mark.parametrize("args, code, message", CASES, ids=[f"{a[0]}-{m}" for a, _, m in CASES])
def test_refused_with_one_line(chain, broken, args, code, message):
    before = snapshot(chain) | snapshot(broken)
    fill = dict(pt=chain / "pt.safetensors", ft=chain / "ft.safetensors", nan=broken / "nan.safetensors",
                inf1=broken / "inf1.safetensors", hf=broken / "hf-missing", d=broken)
    result = runner.invoke(app, [a.format(**fill) for a in args])
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert result.exit_code == code and len(lines) == 1, (result.exit_code, lines)
    assert lines[0].startswith("wrapcli: error:") and message in lines[0] and "Traceback" not in result.output, lines
    assert snapshot(chain) | snapshot(broken) == before


def test_allow_nonfinite_loads_a_broken_model(broken):
    result = runner.invoke(app, ["--allow-nonfinite", "eval", str(broken / "inf1.safetensors"), "--n", "8", "-q", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["results"]["n"] == 8
    # the flag does not outlive the command that was given it
    assert runner.invoke(app, ["eval", str(broken / "inf1.safetensors"), "--n", "8", "-q"]).exit_code == 1


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_state(tmp_path):
    """The loss turns NaN at the 5th step; with a state saved every 3 steps, training stops
    at step 6 (before saving that state), and the step-3 state is what is left."""
    from safetensors import safe_open

    from wrapcli.errors import WrapError
    from wrapcli.training import TrainConfig, train

    from models import tiny

    class NanFromStep5:
        identity = "nan-from-step-5"
        calls = 0

        def batch(self, step, cfg, device):
            return {"input_ids": torch.zeros(2, 3, dtype=torch.long)}

        def loss(self, model, batch, cfg):
            self.calls += 1
            w = next(model.parameters())
            return w.sum() * (float("nan") if self.calls >= 5 else 0.0) + 1.0

    state = tmp_path / "run.state"
    with pytest.raises(WrapError, match="became nan by step 6"):
        train(tiny(), NanFromStep5(), TrainConfig(steps=20, batch_size=2, lr=1e-3), state_path=state, save_every=3)
    with safe_open(str(state), "pt") as f:
        assert f.metadata()["step"] == "3"
