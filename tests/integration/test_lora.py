"""LoRA (peft, the lora extra) for finetune --data and revive --data: the adapters train
alone, are merged into the written model (a rank-R change of each adapted linear map and
nothing else, checked with singular values), or are written alone on request; the
trainable parameters are counted independently from the module shapes."""

import json

import pytest
import torch

from wrapcli.cli import app

from cli import one_line_error, run, runner
from models import PAIRS, archs, make_model_dir, tiny_hf, write_jsonl

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    d = tmp_path_factory.mktemp("lora")
    return write_jsonl(d / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])


@pytest.mark.parametrize("arch", archs())
def test_merged_lora_is_a_low_rank_change_of_the_linear_maps(arch, records, tmp_path):
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    base = make_model_dir(tmp_path / "base", arch)
    res = json.loads(run("finetune", base, "--data", records, "--lora", "2", "--lr", "1e-2", "--steps", "5",
                         "--batch-size", "4", "--device", "cpu", "-q", "--json", "-o", tmp_path / "ft").stdout)["results"]
    a = AutoModelForCausalLM.from_pretrained(str(base))
    b = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ft"))
    linears = {n: m for n, m in a.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D)) and "lm_head" not in n
               and "embed_out" not in n}
    # independent count: r x (in + out) per adapted linear map
    want = sum(2 * sum(m.weight.shape) for m in linears.values())
    assert res["lora"]["trainable_params"] == want and res["written"] == "model"
    wa, wb = dict(a.named_parameters()), dict(b.named_parameters())
    changed = set()
    for name, w in wa.items():
        delta = (wb[name] - w).detach()
        if not torch.any(delta):
            continue
        changed.add(name)
        assert name.removesuffix(".weight") in linears, name  # only the adapted weights move
        assert (torch.linalg.svdvals(delta.double()) > 1e-6 * delta.abs().max()).sum() <= 2, name
    assert changed, "the adapters learned nothing"
    assert json.loads((tmp_path / "ft" / "wrapcli.json").read_text())["lineage"][-1]["lora"]["rank"] == 2


def test_adapter_only_and_relearning_with_lora(records, tmp_path):
    base = make_model_dir(tmp_path / "base", "llama")
    run("finetune", base, "--data", records, "--lora", "4", "--adapter-only", "--lr", "1e-2", "--steps", "3",
        "--batch-size", "4", "--device", "cpu", "-q", "-o", tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapter" / "config.json").exists()
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "adapter"), "--data", str(records)]), "a LoRA adapter")
    res = json.loads(run("revive", base, "--data", records, "--eval-data", records, "--threshold", "0.5", "--lora", "4",
                         "--lr", "1e-2", "--steps", "5", "--batch-size", "4", "--seeds", "2", "--device", "cpu", "-q",
                         "--json").stdout)["results"]
    assert res["lora"]["rank"] == 4 and len(res["models"][0]["accuracy"]["per_seed"]) == 2


@pytest.fixture(scope="module")
def quiz(tmp_path_factory):
    """Multiple-choice records (chance is the floor: no reference needed)."""
    d = tmp_path_factory.mktemp("quiz")
    rows = [{"prompt": f"{w} maps to", "choices": [f" {v}", f" {w}"], "answer": 0} for w, v in PAIRS.items()]
    return write_jsonl(d / "relearn.jsonl", rows[:4]), write_jsonl(d / "held.jsonl", rows[4:])


def test_lora_relearning_without_lr_moves_the_adapter(quiz, tmp_path):
    """With --lora and no --lr the grid is LoRA's (1e-5 ... 1e-3), and at its top the
    relearning records' loss falls: the attack trains. At an LR far too small it does not,
    and the criterion says so (unclear, 'the attack did not train'), not fail."""
    base = make_model_dir(tmp_path / "base", "llama")
    common = ["--data", quiz[0], "--eval-data", quiz[1], "--threshold", "0.9", "--lora", "4", "--steps", "20",
              "--batch-size", "4", "--seeds", "1", "--device", "cpu", "-q", "--json"]
    res = json.loads(run("revive", base, *common).stdout)["results"]
    crit = res["relearning"]
    assert [g["lr"] for g in res["lr_grid"]] == [1e-5, 1e-4, 1e-3] and "LoRA" in res["lr_source"]
    before, after = crit["relearn_loss"][-1]
    assert after < before * 0.99 and crit["trained"] is True and crit["per_lr"][-1]["trained"] is True
    frozen = json.loads(run("revive", base, *common, "--lr", "1e-12").stdout)["results"]
    crit = frozen["relearning"]
    assert crit["trained"] is False and crit["outcome"] == "unclear"
    assert crit["text"].startswith("the attack did not train") and "--lr" in crit["settle"]


@pytest.mark.parametrize("args, message, code", [
    (["--lora", "0"], "--lora must be a rank >= 1", 2),
    (["--lora", "2", "--lora-targets", "no_such_module"], "--lora-targets no_such_module", 2),
    (["--adapter-only"], "go with --lora", 2),
])
def test_bad_lora_options(args, message, code, records, tmp_path):
    base = make_model_dir(tmp_path / "base", "llama")
    one_line_error(runner.invoke(app, ["finetune", str(base), "--data", str(records), "--steps", "1", "--device", "cpu",
                                       "-q", "-o", str(tmp_path / "o"), *args]), message, code)


def test_without_peft_the_error_names_the_extra(records, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_peft(name, *a, **k):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("no peft")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    base = make_model_dir(tmp_path / "base", "llama")
    one_line_error(runner.invoke(app, ["finetune", str(base), "--data", str(records), "--lora", "2", "--steps", "1",
                                       "-q", "-o", str(tmp_path / "o")]), "pip install 'wrapcli[lora]'")


@pytest.mark.parametrize("arch", archs())
def test_gradient_checkpointing_gives_the_same_gradients(arch, records, tmp_path):
    """--checkpointing recomputes activations in the backward pass: on a padded batch of
    the records, full-parameter and LoRA gradients equal those of the plain backward."""
    from dataclasses import replace

    from transformers import AutoTokenizer

    from wrapcli.models.build import enable_checkpointing
    from wrapcli.textdata.userdata import text_data
    from wrapcli.training.loop import TrainConfig
    from wrapcli.training.lora import LoraSpec, attach

    tok = AutoTokenizer.from_pretrained(make_model_dir(tmp_path / "m", "llama"))
    for lora in (None, LoraSpec(2, "all-linear")):
        grads = []
        for checkpointing in (False, True):
            torch.manual_seed(1)  # the same LoRA initialisation
            model = tiny_hf(arch, vocab_size=20)
            if checkpointing:
                enable_checkpointing(model)
                assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
            if lora is not None:
                attach(model, lora)
            data = replace(text_data(records, None, model, 0, tokenizer=tok), seed=0)
            cfg = TrainConfig(steps=1, batch_size=8, lr=1e-3, loss="answer")
            model.train()
            torch.manual_seed(2)  # the same dropout masks (the recompute restores the RNG state)
            data.loss(model, data.batch(0, cfg, "cpu"), cfg).backward()
            grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        plain, ckpt = grads
        assert plain.keys() == ckpt.keys() and plain
        for name in plain:
            torch.testing.assert_close(ckpt[name], plain[name], atol=1e-6, rtol=1e-5)


def test_checkpointing_through_the_cli(records, tmp_path):
    """The flag reaches the loop, the report says so, and the written model is an ordinary one."""
    from transformers import AutoModelForCausalLM

    base = make_model_dir(tmp_path / "base", "llama")
    args = ["--data", records, "--lr", "1e-3", "--steps", "4", "--batch-size", "4", "--device", "cpu", "-q", "--json"]
    plain = json.loads(run("finetune", base, *args, "-o", tmp_path / "plain").stdout)["results"]
    ckpt = json.loads(run("finetune", base, *args, "--lora", "2", "--checkpointing", "-o", tmp_path / "ckpt").stdout)["results"]
    assert ckpt["checkpointing"] is True and plain["checkpointing"] is False
    assert ckpt["after"]["loss"] < ckpt["before"]["loss"]
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ckpt"))
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    rv = json.loads(run("revive", base, "--data", records, "--eval-data", records, "--threshold", "0.5", "--lr", "1e-2",
                        "--steps", "3", "--batch-size", "4", "--seeds", "1", "--checkpointing", "--device", "cpu", "-q",
                        "--json").stdout)["results"]
    assert rv["checkpointing"] is True
    one_line_error(runner.invoke(app, ["finetune", str(base), "--task", "count:a", "--checkpointing", "-q",
                                       "-o", str(tmp_path / "x.safetensors")]), "--checkpointing goes with --data", 2)
