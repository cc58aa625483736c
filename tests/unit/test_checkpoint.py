"""Checkpoint format: round trips checked against Hugging Face's own forward pass, and
every kind of bad file refused with a one-line WrapError."""

import json
import pickle

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from wrapcli.core.errors import WrapError
from wrapcli.models import checkpoint, integrity
from wrapcli.models.lineage import lineage_entry
from wrapcli.tasks import vocab

from models import built_in_archs, tiny, tiny_hf


def logits(model, seed=0):
    x = torch.randint(0, model.config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(input_ids=x).logits


@pytest.mark.parametrize("arch", built_in_archs())
def test_round_trip_gives_identical_logits(tmp_path, arch):
    model = tiny(arch).eval()
    path = tmp_path / "m.safetensors"
    lineage = [lineage_entry("train", None, "count:a", 0, {}, steps=1, lr=1e-3, precision="fp32")]
    checkpoint.save(path, model, vocab=vocab.TOKENS, task={"x": 1}, lineage=lineage)
    ck = checkpoint.load(path)
    saved, loaded = model.state_dict(), ck.model.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)  # bit for bit
    # two forwards of equal weights may round differently (the CPU's matmul kernels can pick another blocking)
    torch.testing.assert_close(logits(ck.model), logits(model), rtol=0, atol=1e-6)
    assert ck.vocab == list(vocab.TOKENS) and ck.task == {"x": 1} and ck.lineage == lineage
    assert len(ck.sha256) == 64


def test_tied_weights_are_stored_once_and_retied(tmp_path):
    model = tiny("gpt2")
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, model, vocab=vocab.TOKENS)
    with safe_open(str(path), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert "lm_head.weight" not in keys and "transformer.wte.weight" in keys
    assert json.loads(meta["tied"]) == {"lm_head.weight": "transformer.wte.weight"}
    assert meta["format"] == "pt" and meta["wrapcli_schema"] == checkpoint.SCHEMA
    ck = checkpoint.load(path)
    assert ck.model.lm_head.weight.data_ptr() == ck.model.transformer.wte.weight.data_ptr()


@pytest.mark.parametrize("arch", built_in_archs())
def test_export_opens_with_from_pretrained_identically(tmp_path, arch):
    model = tiny(arch).eval()
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, model, vocab=vocab.TOKENS, task={"t": 1})
    checkpoint.export(checkpoint.load(path), tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    assert torch.equal(logits(model), logits(hf))
    back = checkpoint.load(tmp_path / "hf")  # wrapcli reads its side file back
    assert back.vocab == list(vocab.TOKENS) and back.task == {"t": 1}


@pytest.mark.parametrize("arch", built_in_archs())
def test_loads_sharded_hf_directory(tmp_path, arch):
    model = tiny_hf(arch).eval()
    model.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    ck = checkpoint.load(tmp_path / "hf")
    assert torch.allclose(logits(model), logits(ck.model))
    assert ck.vocab is None


def test_atomic_save_leaves_existing_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"precious")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(RuntimeError):
        checkpoint.save(path, tiny(), vocab=vocab.TOKENS)
    assert path.read_bytes() == b"precious"
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def _good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    checkpoint.save(path, tiny(), vocab=vocab.TOKENS)
    return path


BAD_FILES = {
    "empty": lambda p, good: p.write_bytes(b""),
    "truncated": lambda p, good: p.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2]),
    "garbled": lambda p, good: p.write_bytes(b"\x07" * 64 + good.read_bytes()[64:]),
    "header only": lambda p, good: p.write_bytes(good.read_bytes()[:200]),
    "pickle": lambda p, good: p.write_bytes(pickle.dumps({"w": [1, 2]})),
    "torch.save": lambda p, good: torch.save({"w": torch.ones(2)}, p),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_give_one_line_errors(tmp_path, kind):
    good = _good_file(tmp_path)
    bad = tmp_path / "bad.safetensors"
    BAD_FILES[kind](bad, good)
    with pytest.raises(WrapError) as e:
        checkpoint.load(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)
    if kind in ("pickle", "torch.save"):
        assert "pickle" in str(e.value)


def test_safetensors_without_wrapcli_metadata(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(WrapError, match="no 'config' metadata"):
        checkpoint.load(tmp_path / "plain.safetensors")


def test_directory_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WrapError, match="no config.json"):
        checkpoint.load(tmp_path / "empty")
    d = tmp_path / "pickled"
    tiny_hf().save_pretrained(d)
    (d / "model.safetensors").unlink()
    torch.save({}, d / "pytorch_model.bin")
    with pytest.raises(WrapError, match="pytorch_model.bin"):
        checkpoint.load(d)
    with pytest.raises(WrapError, match="no such file"):
        checkpoint.load(tmp_path / "missing.safetensors")


def test_weights_not_matching_config(tmp_path):
    from safetensors.torch import save_file

    good = _good_file(tmp_path)
    meta = checkpoint.read_metadata(good)
    save_file({"transformer.wte.weight": torch.ones(3, 3)}, str(tmp_path / "x.safetensors"), metadata=meta)
    with pytest.raises(WrapError, match=r"tensor transformer.wte.weight has shape \[3, 3\] but the config implies \[282, 32\]"):
        checkpoint.load(tmp_path / "x.safetensors")


def test_the_lineage_is_checked_against_its_schema(tmp_path):
    """A lineage entry missing a field, or with a field of the wrong type, is one line
    naming it; keys the schema does not list (a newer wrapcli's) are kept."""
    good = lineage_entry("finetune", "ab" * 32, "count:b", 0, {}, steps=10, lr=1e-3, precision="fp32")
    model = tiny()
    cases = [
        ([{k: v for k, v in good.items() if k != "seed"}], "lineage[0].seed: missing"),
        ([{**good, "lr": "fast"}], "lineage[0].lr: expected float, got str"),
        ([good, {**good, "command": "wrapcli finetune"}], "lineage[1].command: expected a list, got str"),
    ]
    for lineage, message in cases:
        path = tmp_path / "x.safetensors"
        checkpoint.save(path, model, vocab=list(vocab.TOKENS), lineage=lineage)
        with pytest.raises(WrapError, match=r"malformed lineage: " + message.replace("[", r"\[").replace("]", r"\]")):
            checkpoint.load(path)
    checkpoint.save(tmp_path / "new.safetensors", model, vocab=list(vocab.TOKENS), lineage=[{**good, "future": 1}])
    assert checkpoint.load(tmp_path / "new.safetensors").lineage[0]["future"] == 1


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_a_converting_load_reads_tensors_rather_than_mapping_the_file(tmp_path, monkeypatch, dtype):
    """bf16 from fp32 files reads each tensor with pread (mapped pages stayed resident beside
    the converted copy); the stored dtype keeps transformers' mapping. Either way the weights
    are from_pretrained's own."""
    import transformers.modeling_utils as loading

    tiny_hf("llama").save_pretrained(tmp_path / "m")
    backends, real = [], loading.safe_open

    def spy(*args, **kwargs):
        backends.append(kwargs.get("backend"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "safe_open", spy)
    got = checkpoint.load(tmp_path / "m", dtype=dtype).model.state_dict()
    assert backends and all((b == "pread") == (dtype == "bfloat16") for b in backends)
    assert loading.safe_open is spy  # put back after the load
    monkeypatch.setattr(loading, "safe_open", real)
    want = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=getattr(torch, dtype)).state_dict()
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == getattr(torch, dtype) and torch.equal(got[name], want[name]), name


def test_the_finite_check_sees_every_chunk():
    t = torch.zeros(2 * integrity.FINITE_CHUNK + 5)
    integrity.refuse_nonfinite("m", "w", t)
    t[-1] = float("inf")  # in the last, short chunk
    with pytest.raises(WrapError, match="w has 1 non-finite"):
        integrity.refuse_nonfinite("m", "w", t)
