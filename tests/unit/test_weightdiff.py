"""Weight comparison: a known edit must be found exactly, streamed from the files."""

import pytest
import torch

from wrapcli.analyses.weightdiff import compare_weights, module_kind
from wrapcli.core.errors import WrapError
from wrapcli.models import checkpoint

from models import MLP_OUT, archs, rank1_edit, tiny, tiny_hf


@pytest.mark.parametrize("arch", archs())
def test_known_rank1_edit_in_one_mlp_is_found_and_nothing_else(tmp_path, arch):
    base = tiny_hf(arch)
    base.save_pretrained(tmp_path / "a", max_shard_size="40KB")  # sharded on purpose
    rank1_edit(base, arch)
    base.save_pretrained(tmp_path / "b")
    rep = compare_weights(tmp_path / "a", tmp_path / "b")
    assert rep["changed_tensors"] == [MLP_OUT[arch]]
    st = rep["tensors"][MLP_OUT[arch]]
    assert st["rank"] == 1 and st["energy_top"]["1"] == pytest.approx(1.0)
    assert {k for k, v in rep["layers"].items() if v["n_changed"]} == {"1"}
    assert {k for k, v in rep["module_kinds"].items() if v["n_changed"]} == {"mlp"}
    assert rep["top_units"] and all(u["layer"] == 1 and u["kind"] == "neuron" for u in rep["top_units"])
    for name, s in rep["tensors"].items():
        if name != MLP_OUT[arch]:
            assert s["relative_change"] == 0 and s["cosine"] == pytest.approx(1.0)


def test_relative_change_and_cosine_by_hand(tmp_path):
    model = tiny("gpt2")
    checkpoint.save(tmp_path / "a.safetensors", model)
    name = "transformer.h.0.attn.c_attn.weight"
    w = dict(model.named_parameters())[name]
    before = w.detach().clone()
    with torch.no_grad():
        w.mul_(1.5)
    checkpoint.save(tmp_path / "b.safetensors", model)
    st = compare_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors")["tensors"][name]
    assert st["relative_change"] == pytest.approx(0.5, rel=1e-6)
    assert st["cosine"] == pytest.approx(1.0) and st["rank"] == torch.linalg.matrix_rank(before).item()


def test_refuses_mismatched_checkpoints(tmp_path):
    tiny_hf("gpt2").save_pretrained(tmp_path / "a")
    tiny_hf("gpt2", vocab_size=120).save_pretrained(tmp_path / "b")
    with pytest.raises(WrapError, match="transformer.wte.weight has shape"):
        compare_weights(tmp_path / "a", tmp_path / "b")
    tiny_hf("llama").save_pretrained(tmp_path / "c")
    with pytest.raises(WrapError, match="exists only in"):
        compare_weights(tmp_path / "a", tmp_path / "c")


def test_refuses_pickled_directory(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    torch.save({}, d / "pytorch_model.bin")
    with pytest.raises(WrapError, match="pickled weights"):
        compare_weights(d, d)


def test_module_kinds():
    assert module_kind("transformer.h.0.mlp.c_proj.weight") == "mlp"
    assert module_kind("transformer.h.0.attn.c_proj.weight") == "attention"
    assert module_kind("model.layers.3.input_layernorm.weight") == "norm"
    assert module_kind("gpt_neox.embed_in.weight") == "embedding"
