"""prune through the CLI on wrapcli checkpoints and Hugging Face directories."""

import json

import pytest
import torch

from wrapcli import checkpoint
from wrapcli.cli import app

from cli import one_line_error, run, runner
from models import make_model_dir, write_jsonl

TINY = ["--device", "cpu", "-q", "--eval-size", "16", "--batch-size", "32"]


def test_prune_sweep_json(chain, tmp_path):
    out = tmp_path / "prune.json"
    run("prune", chain / "ft.safetensors", "--task", "count:a", "--also", "count:b", "--k", "0,1,3",
        *TINY, "-o", out)
    rep = json.loads(out.read_text())
    res = rep["results"]
    assert rep["schema"] == "wrapcli.prune" and res["unit"] == "neuron" and res["n_units"] == 2 * 128
    assert [r["k"] for r in res["sweep"]] == [0, 1, 3]
    assert set(res["sweep"][0]["results"]) == {"count:a", "count:b"}
    scores = [u["score"] for u in res["pruned"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    # K=0 is the unpruned model: the same numbers eval reports
    ev = json.loads(run("eval", chain / "ft.safetensors", "--task", "count:a", "--n", "16", "--json", "-q").stdout)
    assert res["sweep"][0]["results"]["count:a"] == ev["results"]["tasks"]["count:a"]


def test_prune_writes_pruned_checkpoint(chain, tmp_path):
    w = tmp_path / "pruned.safetensors"
    res = json.loads(run("prune", chain / "ft.safetensors", "--task", "count:a", "--unit", "head",
                         "--k", "0,1", "-w", w, "--write-k", "2", *TINY, "--json").stdout)["results"]
    ck = checkpoint.load(w)
    assert ck.lineage[-1]["kind"] == "prune" and ck.lineage[-1]["k"] == 2
    for unit in res["pruned"][:2]:
        c_proj = ck.model.transformer.h[unit["layer"]].attn.c_proj.weight  # Conv1D: rows = inputs
        hd = ck.model.config.n_embd // ck.model.config.n_head
        assert torch.all(c_proj[unit["index"] * hd : (unit["index"] + 1) * hd] == 0)
    original = checkpoint.load(chain / "ft.safetensors")
    assert not torch.equal(original.model.transformer.h[0].attn.c_proj.weight, ck.model.transformer.h[0].attn.c_proj.weight) or \
        not torch.equal(original.model.transformer.h[1].attn.c_proj.weight, ck.model.transformer.h[1].attn.c_proj.weight)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
def test_prune_hf_directory_on_user_data(tmp_path, arch):
    model_dir = make_model_dir(tmp_path / arch, arch)
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "red maps to", "answer": " blue"}] * 4)
    res = json.loads(run("prune", model_dir, "--data", data, "--unit", "head", "--k", "0,1,2",
                         "--device", "cpu", "-q", "--json").stdout)["results"]
    assert [r["k"] for r in res["sweep"]] == [0, 1, 2]
    assert 0 <= res["sweep"][1]["results"]["data"]["token_accuracy"] <= 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "count:a", "--unit", "layer"], "'--unit': 'layer' is not one of"),
        (["--task", "count:a", "--k", "0,999"], "more than the 256 neuron units"),
        (["--task", "count:a", "-w", "{d}/x.safetensors"], "--write-k"),
        ([], "give --task"),
    ],
)
def test_bad_input(chain, tmp_path, args, message):
    args = [a.format(d=tmp_path) for a in args]
    one_line_error(runner.invoke(app, ["prune", str(chain / "ft.safetensors"), *args, *TINY]), message, 2)


def test_unknown_architecture_one_line(tmp_path):
    from transformers import OPTConfig, OPTForCausalLM

    OPTForCausalLM(OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2,
                             max_position_embeddings=32, word_embed_proj_dim=16)).save_pretrained(tmp_path / "opt")
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": " b"}])
    one_line_error(runner.invoke(app, ["prune", str(tmp_path / "opt"), "--data", str(data), "--device", "cpu"]),
                   "unsupported architecture 'opt'")
