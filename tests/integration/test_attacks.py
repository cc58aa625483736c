"""The attacks beyond the paper's three, through the CLI, on Hugging Face directories of
three architectures and on built-in checkpoints: quantize writes a model whose block
weights are exactly the analysis' rounding of the originals (itself checked by hand and
against bitsandbytes in tests/unit/test_quantization.py), leaves everything else alone,
records the scheme in its lineage, and is read by eval."""

import json

import pytest
import torch

from wrapcli.analyses.quantization import nf4, rtn
from wrapcli.cli import app

from cli import one_line_error, run, runner
from models import PAIRS, make_model_dir, tiny_compiled, write_jsonl


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("scheme, bits, group", [("nf4", 4, 64), ("rtn", 4, 8), ("rtn", 8, 0)])
def test_quantize_rounds_the_block_weights_and_nothing_else(arch, scheme, bits, group, tmp_path):
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    base = make_model_dir(tmp_path / "base", arch)
    rep = json.loads(run("quantize", base, "-o", tmp_path / "q", "--scheme", scheme, "--bits", bits, "--group-size", group,
                         "-q", "--json").stdout)["results"]
    a = AutoModelForCausalLM.from_pretrained(str(base))
    b = AutoModelForCausalLM.from_pretrained(str(tmp_path / "q"))
    blocks = {"gpt2": "transformer.h.", "llama": "model.layers.", "gpt_neox": "gpt_neox.layers."}[arch]
    linears = {f"{n}.weight": m for n, m in a.named_modules()
               if isinstance(m, (torch.nn.Linear, Conv1D)) and n.startswith(blocks)}
    wb = dict(b.named_parameters())
    for name, w in a.named_parameters():
        if name in linears:
            axis = 1 if isinstance(linears[name], Conv1D) else 0
            want = nf4(w, group) if scheme == "nf4" else rtn(w, bits, group, axis)
            assert torch.equal(wb[name], want), name
            assert not torch.equal(wb[name], w), name
        else:  # embeddings, norms, biases and the head stay as they were
            assert torch.equal(wb[name], w), name
    assert rep["n_tensors"] == len(linears) and {t["name"] for t in rep["tensors"]} == set(linears)
    side = json.loads((tmp_path / "q" / "wrapcli.json").read_text())
    assert side["lineage"][-1]["kind"] == "quantize"
    assert (side["lineage"][-1]["scheme"], side["lineage"][-1]["bits"], side["lineage"][-1]["group_size"]) == (
        scheme, bits, group)
    records = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    ev = json.loads(run("eval", tmp_path / "q", "--data", records, "-q", "--json").stdout)["results"]
    assert ev["n"] == len(PAIRS)


def test_quantize_a_built_in_checkpoint(chain, tmp_path):
    from wrapcli.models import checkpoint

    run("quantize", chain / "ft.safetensors", "--scheme", "rtn", "--bits", "4", "-o", tmp_path / "q.safetensors", "-q")
    ck = checkpoint.load(tmp_path / "q.safetensors")
    assert ck.lineage[-1]["kind"] == "quantize" and ck.task == checkpoint.load(chain / "ft.safetensors").task
    run("eval", tmp_path / "q.safetensors", "--task", "count:a", "--eval-size", "16", "-q")


@pytest.mark.parametrize("args, message", [
    (["--scheme", "nf4", "--bits", "8"], "--bits 8: NF4 is a 4-bit code book"),
    (["--scheme", "rtn", "--bits", "5"], "--bits 5: round-to-nearest takes 2, 3, 4 or 8 bits"),
    (["--group-size", "-1"], "--group-size -1"),
    (["--scheme", "nf4", "--group-size", "0"], "--group-size 0"),
])
def test_quantize_refuses_what_it_cannot_do(chain, tmp_path, args, message):
    one_line_error(runner.invoke(app, ["quantize", str(chain / "ft.safetensors"), "-o", str(tmp_path / "q.safetensors"),
                                       *args, "-q"]), message, 2)
    assert not (tmp_path / "q.safetensors").exists()


def test_quantize_refuses_a_compiled_model_and_a_mismatched_output(chain, tmp_path):
    from wrapcli.models import checkpoint

    compiled = tmp_path / "counter.safetensors"
    checkpoint.save_compiled(compiled, tiny_compiled(1), lineage=[{"kind": "compile", "accuracy": {"count:a": 0.5}}])
    one_line_error(runner.invoke(app, ["quantize", str(compiled), "-o", str(tmp_path / "q.safetensors"), "-q"]),
                   "a compiled (Tracr) model", 2)
    one_line_error(runner.invoke(app, ["quantize", str(chain / "ft.safetensors"), "-o", str(tmp_path / "qdir"), "-q"]),
                   "-o " + str(tmp_path / "qdir") + ": a Hugging Face directory is written as a directory", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter.safetensors"]


def test_in_context_examples_are_the_prompts_assembled_by_hand(tmp_path):
    """eval --shots: with K demonstrations the record is scored on exactly the prompt a
    hand-written assembly gives (K solved records of the pool, drawn with numpy's seeded
    generator, never the record itself, each prompt + answer + a blank line), and the
    accuracy per K equals plain eval of a file holding those prompts."""
    import numpy as np

    base = make_model_dir(tmp_path / "m", "llama")
    rows = [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()]
    data = write_jsonl(tmp_path / "forget.jsonl", rows)
    pool = write_jsonl(tmp_path / "pool.jsonl", rows[:5] + [{"prompt": "once upon", "answer": " red"}])
    rep = json.loads(run("eval", base, "--data", data, "--shots", "0,2", "--shots-from", pool, "--seed", "3",
                         "--samples", tmp_path / "s.jsonl", "-q", "--json").stdout)["results"]
    zero, two = rep["shots"]["per_k"]
    assert zero["k"] == 0 and zero["accuracy"] == rep["scores"]["accuracy"] and two["n"] == len(rows)
    pool_rows = rows[:5] + [{"prompt": "once upon", "answer": " red"}]
    samples = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    hand = []
    for i, rec in enumerate(rows):
        others = [p for p in pool_rows if p["prompt"] != rec["prompt"]]
        picked = np.random.default_rng([3, i]).choice(len(others), size=2, replace=False)
        prompt = "".join(others[j]["prompt"] + others[j]["answer"] + "\n\n" for j in picked) + rec["prompt"]
        assert samples[i]["shots"]["2"]["prompt"] == prompt and samples[i]["shots"]["0"]["prompt"] == rec["prompt"]
        assert rec["prompt"] + rec["answer"] not in prompt.removesuffix(rec["prompt"])  # never its own answer
        hand.append({"prompt": prompt, "answer": rec["answer"]})
    plain = json.loads(run("eval", base, "--data", write_jsonl(tmp_path / "hand.jsonl", hand), "-q",
                           "--json").stdout)["results"]["scores"]
    assert plain["accuracy"] == two["accuracy"] and plain["ci95"] == two["ci95"]


@pytest.mark.parametrize("args, message", [
    (["--shots", "3"], "--shots and --shots-from go together"),
    (["--shots", "3,1", "--shots-from", "{pool}"], "strictly increasing"),
    (["--shots", "9", "--shots-from", "{pool}"], "fewer than --shots 9"),
])
def test_in_context_examples_refusals(tmp_path, args, message):
    base = make_model_dir(tmp_path / "m", "llama")
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    one_line_error(runner.invoke(app, ["eval", str(base), "--data", str(pool), *[a.format(pool=pool) for a in args],
                                       "-q"]), message, 2)
