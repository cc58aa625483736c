"""prune through the CLI on wrapcli checkpoints and Hugging Face directories."""

import json

import pytest
import torch

from wrapcli.cli import app
from wrapcli.models import checkpoint

from cli import one_line_error, run, runner
from models import archs, make_model_dir, write_jsonl

TINY = ["--device", "cpu", "-q", "--eval-size", "16", "--batch-size", "32"]


def test_prune_sweep_json(chain, tmp_path):
    out = tmp_path / "prune.json"
    run("prune", chain / "ft.safetensors", "--task", "count:a", "--also", "count:b", "--k", "0,1,3", "--unit", "neuron",
        *TINY, "-o", out)
    rep = json.loads(out.read_text())
    res = rep["results"]
    assert rep["schema"] == "wrapcli.prune" and res["unit"] == "neuron" and res["n_units"] == 2 * 128
    assert [r["k"] for r in res["sweep"]] == [0, 1, 3]
    assert set(res["sweep"][0]["results"]) == {"count:a", "count:b"}
    scores = [u["score"] for u in res["pruned"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    # K=0 is the unpruned model: the same numbers eval reports
    ev = json.loads(run("eval", chain / "ft.safetensors", "--task", "count:a", "--eval-size", "16", "--json", "-q").stdout)
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


@pytest.mark.parametrize("arch", archs())
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
        (["--task", "count:a", "--k", "0,999"], "more than the 576 row units"),
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


def test_rows_reverted_to_the_base_in_the_written_checkpoint(chain, tmp_path):
    """--unit row --revert-to: the written model holds the base's values in exactly the K
    rows the report names, the fine-tune's values everywhere else; reverting every row
    of every block to the base gives the base's accuracy back."""
    w = tmp_path / "reverted.safetensors"
    res = json.loads(run("prune", chain / "ft.safetensors", "--task", "count:a", "--unit", "row",
                         "--revert-to", chain / "pt.safetensors", "--k", "0,3", "-w", w, "--write-k", "3", *TINY,
                         "--json").stdout)["results"]
    assert res["operation"] == "revert" and res["revert_to"]["path"] == str(chain / "pt.safetensors")
    assert all(u["kind"].startswith("row:") for u in res["pruned"])
    ft, pt, out = (checkpoint.load(p).model.state_dict() for p in (chain / "ft.safetensors", chain / "pt.safetensors", w))
    touched = {}
    for u in res["pruned"][:3]:
        name = f"transformer.h.{u['layer']}.{u['kind'].split(':', 1)[1]}.weight"
        touched.setdefault(name, []).append(u["index"])
    for name, tensor in out.items():
        rows = touched.get(name, [])  # GPT-2's Conv1D: an output feature is a column
        keep = [i for i in range(tensor.shape[-1]) if i not in rows] if tensor.dim() == 2 else None
        if rows:
            assert torch.equal(tensor[:, rows], pt[name][:, rows]) and torch.equal(tensor[:, keep], ft[name][:, keep])
        else:
            assert torch.equal(tensor, ft[name]), name
    assert checkpoint.load(w).lineage[-1]["operation"] == "revert"
    n_rows = res["n_units"]
    allrows = json.loads(run("prune", chain / "ft.safetensors", "--task", "count:a", "--unit", "row", "--revert-to",
                             chain / "pt.safetensors", "--k", f"0,{n_rows}", *TINY, "--json").stdout)["results"]
    base = json.loads(run("prune", chain / "pt.safetensors", "--task", "count:a", "--k", "0", "--unit", "row", *TINY,
                          "--json").stdout)["results"]
    assert allrows["sweep"][1]["results"]["count:a"]["natural"]["accuracy"] == pytest.approx(
        base["sweep"][0]["results"]["count:a"]["natural"]["accuracy"])


@pytest.mark.parametrize("arch", archs())
def test_rows_and_revert_on_hf_directories(tmp_path, arch):
    base = make_model_dir(tmp_path / "base", arch)
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "red maps to", "answer": " blue"},
                                              {"prompt": "gold maps to", "answer": " red"}])
    run("finetune", base, "--data", data, "--lr", "1e-2", "--steps", "5", "--batch-size", "2", "--device", "cpu", "-q",
        "-o", tmp_path / "ft")
    res = json.loads(run("prune", tmp_path / "ft", "--data", data, "--unit", "row", "--revert-to", base,
                         "--k", "0,2", "--device", "cpu", "-q", "--json").stdout)["results"]
    assert res["unit"] == "row" and res["operation"] == "revert" and len(res["pruned"]) == 2
    assert res["sweep"][1]["results"]["data"]["metric"] == "exact_match"


def test_revert_to_a_model_of_another_shape_is_refused(chain, tmp_path):
    other = tmp_path / "other.safetensors"
    run("train", "--preset", "smoke", "--steps", "2", "--layers", "1", "--device", "cpu", "-q",
        "-o", other)
    one_line_error(runner.invoke(app, ["prune", str(chain / "ft.safetensors"), "--task", "count:a", "--revert-to",
                                       str(other), *TINY]), "--revert-to", 1)


def test_the_default_unit_is_the_papers_row(chain):
    """prune without --unit prunes rows (one output feature of any linear map in the
    blocks), the paper's unit: as many units as the blocks' linear maps have outputs."""
    from wrapcli.models import checkpoint

    res = json.loads(run("prune", chain / "ft.safetensors", "--task", "count:a", "--k", "0,1", *TINY,
                         "--json").stdout)["results"]
    model = checkpoint.load(chain / "ft.safetensors").model
    rows = sum(p.shape[1] if "c_attn" in n or "c_fc" in n or "c_proj" in n else p.shape[0]
               for n, p in model.named_parameters() if n.startswith("transformer.h.") and n.endswith(".weight")
               and p.dim() == 2)
    assert res["unit"] == "row" and res["n_units"] == rows
