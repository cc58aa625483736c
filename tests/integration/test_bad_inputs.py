"""The bad-input corpus: one table, as tracr keeps its test cases, of hostile or mistaken
invocations across every command. Each must exit non-zero with exactly one stderr line
that names its subject (file, tensor, record or option), print no traceback, and leave
every file that existed before byte-identical."""

import hashlib
import json
import struct
from pathlib import Path

import pytest
import torch

from wrapcli.models import checkpoint

from cli import runner
from models import PAIRS, make_model_dir, tiny_hf, write_jsonl

TINY = ["--preset", "smoke", "--device", "cpu", "-q"]
RESUME = ["train", *TINY, "--steps", "6", "--save-every", "2", "--eval-size", "16", "--resume"]


def snapshot(*roots):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for r in roots for p in sorted(r.rglob("*")) if p.is_file()}


def _rewrite_header(src: Path, dest: Path, change) -> None:
    """Copy a safetensors file with its JSON header edited by ``change(header)``."""
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    change(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    dest.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


class _KeptPath(type(Path())):
    def unlink(self, missing_ok=False):  # the fixture's run keeps its resume state
        pass


@pytest.fixture(scope="module")
def bad(chain, tmp_path_factory):
    from safetensors.torch import load_file, save_file

    from wrapcli.runs import train as jobs

    d = tmp_path_factory.mktemp("bad")
    pt = chain / "pt.safetensors"
    meta = checkpoint.read_metadata(pt)
    # non-finite weights
    for name, fill in (("nan", lambda t: t.fill_(float("nan"))), ("inf1", None)):
        ck = checkpoint.load(chain / "ft.safetensors")
        with torch.no_grad():
            if fill:
                for p in ck.model.parameters():
                    fill(p)
            else:
                next(iter(ck.model.parameters())).view(-1)[3] = float("inf")
        checkpoint.save(d / f"{name}.safetensors", ck.model, vocab=ck.vocab, task=ck.task, lineage=ck.lineage)
    # dtypes: a header that declares int32 for float32 bytes; weights stored as int64
    _rewrite_header(pt, d / "dtype-lie.safetensors",
                    lambda h: h["transformer.h.0.attn.c_attn.weight"].update(dtype="I32"))
    save_file({k: v.long() for k, v in load_file(pt).items()}, d / "int64.safetensors", metadata=meta)
    # a config that claims a far larger model than the tensors
    cfg = json.loads(meta["config"])
    cfg.update(n_embd=4096, n_layer=48, n_head=32)
    save_file(load_file(pt), d / "big-claim.safetensors", metadata={**meta, "config": json.dumps(cfg)})
    # not safetensors at all
    raw = pt.read_bytes()
    (d / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    (d / "random.safetensors").write_bytes(bytes(range(256)) * 64)
    (d / "empty.safetensors").write_bytes(b"")
    torch.save({"w": torch.ones(2)}, d / "weights.bin")
    # Hugging Face directories: a tensor missing; an index pointing at the wrong shard; a
    # tokenizer larger than the model's vocabulary; an encoder; no tokenizer files
    tiny_hf("gpt2").save_pretrained(d / "hf-missing")
    weights = d / "hf-missing" / "model.safetensors"
    tensors = load_file(weights)
    tensors.pop("transformer.h.1.mlp.c_fc.weight")
    save_file(tensors, weights, metadata={"format": "pt"})
    tiny_hf("gpt2").save_pretrained(d / "hf-shape")  # one tensor of another shape than config.json says
    weights = d / "hf-shape" / "model.safetensors"
    tensors = load_file(weights)
    tensors["transformer.h.0.mlp.c_proj.weight"] = torch.zeros(64, 16)
    save_file(tensors, weights, metadata={"format": "pt"})
    tiny_hf("gpt2").save_pretrained(d / "hf-shards", max_shard_size="40KB")
    index = d / "hf-shards" / "model.safetensors.index.json"
    idx = json.loads(index.read_text())
    shards = sorted(set(idx["weight_map"].values()))
    assert len(shards) > 1
    name = next(k for k, v in sorted(idx["weight_map"].items()) if v == shards[0])
    idx["weight_map"][name] = shards[1]
    index.write_text(json.dumps(idx))
    make_model_dir(d / "hf")  # a sound one, for the data cases
    make_model_dir(d / "hf-vocab")
    from wrapcli.models.checkpoint import vocab_tokenizer

    vocab_tokenizer([f"w{i}" for i in range(500)]).save_pretrained(d / "hf-vocab")
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64)).save_pretrained(d / "bert")
    tiny_hf("gpt2", vocab_size=20).save_pretrained(d / "hf-notok")
    # user data
    write_jsonl(d / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    (d / "latin1.jsonl").write_bytes(b'{"prompt": "red maps to", "answer": " pink"}\n{"prompt": "caf\xe9", "answer": " x"}\n')
    write_jsonl(d / "mixed-labels.jsonl", [{"text": "red maps to", "label": v} for v in (1, "1", True, 0)])
    write_jsonl(d / "texts.jsonl", [{"text": f"{w} maps to", "label": i % 2} for i, w in enumerate(PAIRS)])
    write_jsonl(d / "four.jsonl", [{"text": f"{w} maps to", "label": i % 2} for i, w in enumerate(list(PAIRS)[:4])])
    # a record longer than the model's context (64 positions); multiple-choice records
    write_jsonl(d / "long.jsonl", [{"prompt": "red maps to", "answer": " blue"},
                                   {"prompt": " ".join(["red"] * 80), "answer": " blue"}])
    write_jsonl(d / "choices.jsonl", [{"prompt": "red maps to", "choices": [" blue", " gold"], "answer": 0}])
    write_jsonl(d / "choice-bad.jsonl", [{"prompt": "red maps to", "choices": [" blue", " gold"], "answer": 5}])
    # reports: not JSON; a probe report whose results are malformed, one with a NaN
    # accuracy, one of a newer envelope
    (d / "notjson.json").write_text("{ this is not json")
    from cli import run

    run("probe", chain / "ft.safetensors", "--target", "count:a", "--eval-size", "40", "--random-inits", "1",
        "-q", "--no-attention", "-o", d / "probe.json")
    rep = json.loads((d / "probe.json").read_text())
    nan = json.loads(json.dumps(rep))
    nan["results"]["layers"][0]["accuracy"] = float("nan")
    (d / "nan-report.json").write_text(json.dumps(nan))
    (d / "newer.json").write_text(json.dumps({**rep, "schema_version": 99}))
    (d / "probe-copy.json").write_text(json.dumps(rep))
    (d / "probe-nolayers.json").write_text(json.dumps({**rep, "results": {**rep["results"], "layers": []}}))
    del rep["results"]["layers"][0]["margin"]
    (d / "malformed.json").write_text(json.dumps(rep))
    run("prune", chain / "ft.safetensors", "--task", "count:a", "--k", "0,1", "--eval-size", "16", "--batches", "1",
        "-q", "-o", d / "prune.json")
    rep = json.loads((d / "prune.json").read_text())
    row = rep["results"]["sweep"][1]["results"]["count:a"]["natural"]
    row["accuracy"] = float("inf")
    (d / "prune-inf.json").write_text(json.dumps(rep))
    (d / "prune.json").unlink()
    (d / "probe.json").unlink()
    # a checkpoint of a newer checkpoint schema; lying metadata: a lineage that is no list,
    # an entry without kind, a fine-tune entry without its LR, a task that is a list
    save_file(load_file(pt), d / "schema99.safetensors", metadata={**meta, "wrapcli_schema": "99"})
    entry = {"kind": "finetune", "parent_sha256": None, "command": ["wrapcli"], "seed": 0, "task": "count:b",
             "wrapcli_version": "0", "created": "2026-01-01T00:00:00+00:00", "accuracy": {}}  # no steps, lr
    for name, key, value in (("lineage-dict", "lineage", {"kind": "train"}),
                             ("lineage-nokind", "lineage", [{k: v for k, v in entry.items() if k != "kind"}]),
                             ("lineage-nolr", "lineage", [entry]),
                             ("lineage-badseed", "lineage", [{**entry, "seed": "zero"}]),
                             ("task-list", "task", [1, 2]),
                             ("task-types", "task", {**json.loads(meta["task"]), "window": "40"})):
        save_file(load_file(pt), d / f"{name}.safetensors", metadata={**meta, key: json.dumps(value)})
    (d / "deep.jsonl").write_text('{"prompt": ' + "[" * 100000 + "]" * 100000 + ', "answer": " x"}\n')
    (d / "surrogate.jsonl").write_text('{"prompt": "red \\ud800 maps to", "answer": " blue"}\n')
    (d / "ft-copy.safetensors").write_bytes((chain / "ft.safetensors").read_bytes())
    make_model_dir(d / "hf-listside")
    (d / "hf-listside" / "wrapcli.json").write_text("[1, 2]")
    (d / "a-file").write_text("not a directory")
    # resume states: one real one (a run of 6 steps, stopped after the state of step 4),
    # and broken copies of it, each beside the output it would resume
    jobs_state_path = jobs.state_path
    jobs.state_path = lambda out: _KeptPath(f"{out}.state")
    try:
        run(*RESUME, "-o", d / "kept.safetensors")
    finally:
        jobs.state_path = jobs_state_path
    state = d / "kept.safetensors.state"
    (d / "kept.safetensors").unlink()
    tensors, smeta = load_file(state), checkpoint.read_metadata(state)
    variants = {
        "no-model": ({k: v for k, v in tensors.items() if not k.startswith("model/")}, smeta),
        "beyond": (tensors, {**smeta, "step": "99"}),
        "nan-state": ({k: (v.fill_(float("nan")) if k.startswith("model/") and v.is_floating_point() else v)
                       for k, v in load_file(state).items()}, smeta),
        "no-meta": (tensors, {"format": "pt"}),
    }
    for name, (t, m) in variants.items():
        save_file(t, d / f"{name}.safetensors.state", metadata=m)
    (d / "random.safetensors.state").write_bytes(bytes(range(256)) * 64)
    (d / "truncated.safetensors.state").write_bytes(state.read_bytes()[:1000])
    (d / "other.safetensors.state").write_bytes(state.read_bytes())
    state.unlink()
    return d


# (arguments, exit code, words the one-line error must contain). {pt} {ft} {d} (the bad
# files' folder) {c} (the chain's folder) {c_name} are filled in.
CASES = [
    # -- broken models --------------------------------------------------------------------
    (["eval", "{d}/nan.safetensors", "--eval-size", "8"], 1, "non-finite"),
    (["eval", "{d}/inf1.safetensors", "--eval-size", "8"], 1, "1 non-finite"),
    (["finetune", "{d}/nan.safetensors", *TINY, "--task", "count:b", "--steps", "2", "-o", "{d}/o.safetensors"], 1, "non-finite"),
    (["prune", "{d}/nan.safetensors", "--task", "count:a", "--k", "0,1", "-q"], 1, "non-finite"),
    (["revive", "{d}/nan.safetensors", "--task", "count:a", *TINY, "--steps", "2"], 1, "non-finite"),
    (["compare", "{pt}", "{d}/nan.safetensors", "--task", "count:a", "--eval-size", "8", "-q"], 1, "non-finite"),
    (["probe", "{d}/nan.safetensors", "--target", "count:a", "--eval-size", "40", "-q"], 1, "non-finite"),
    (["eval", "{d}/dtype-lie.safetensors", "--eval-size", "8"], 1, "transformer.h.0.attn.c_attn.weight is stored as I32"),
    (["eval", "{d}/int64.safetensors", "--eval-size", "8"], 1, "is stored as I64"),
    (["eval", "{d}/big-claim.safetensors", "--eval-size", "8"], 1, "but the config implies"),
    (["eval", "{d}/truncated.safetensors", "--eval-size", "8"], 1, "truncated.safetensors"),
    (["eval", "{d}/random.safetensors", "--eval-size", "8"], 1, "random.safetensors"),
    (["eval", "{d}/weights.bin", "--eval-size", "8"], 1, "pickle"),
    (["eval", "{d}/hf-missing", "--eval-size", "8"], 1, "transformer.h.1.mlp.c_fc.weight is missing"),
    (["eval", "{d}/hf-shards", "--data", "{d}/pairs.jsonl"], 1, "model.safetensors.index.json: puts tensor"),
    (["eval", "{d}/hf-shape", "--eval-size", "8"], 1, "tensor transformer.h.0.mlp.c_proj.weight has shape [64, 16] but the config implies"),
    (["finetune", "{d}/hf-vocab", "--data", "{d}/pairs.jsonl", "--steps", "2", "-q", "-o", "{d}/o"], 1, "the tokenizer has 503 tokens but the model embeds 15"),
    (["eval", "{d}/bert", "--data", "{d}/pairs.jsonl"], 1, "BertForMaskedLM, not a causal language model"),
    (["finetune", "{d}/bert", "--data", "{d}/pairs.jsonl", "--steps", "2", "-q", "-o", "{d}/o"], 1, "not a causal language model"),
    (["eval", "{d}/hf-notok", "--data", "{d}/pairs.jsonl"], 1, "no tokenizer files"),
    (["eval", "{d}/missing.safetensors"], 1, "missing.safetensors: no such file"),
    # a hub name is not a path: refused at once, never waited on (wrapcli never downloads)
    (["eval", "gpt2", "--data", "{d}/pairs.jsonl"], 1, "gpt2: no such file or directory (wrapcli reads local"),
    (["compare", "gpt2", "{ft}", "--task", "count:a", "-q"], 1, "gpt2: no such file or directory"),
    (["revive", "{d}/hf", "--data", "{d}/pairs.jsonl", "--eval-data", "{d}/pairs.jsonl", "--reference", "Qwen/Qwen2-0.5B",
      "--threshold", "0.5", "-q"], 1, "Qwen/Qwen2-0.5B: no such file or directory"),
    # the quantization attack: a scheme it cannot do, an output of the other form
    (["quantize", "{ft}", "--scheme", "nf4", "--bits", "8", "-o", "{d}/q.safetensors"], 2, "NF4 is a 4-bit code book"),
    (["quantize", "{d}/hf", "-o", "{d}/q.safetensors"], 2, "a Hugging Face directory is written as a directory"),
    (["quantize", "gpt2", "-o", "{d}/q.safetensors"], 1, "gpt2: no such file or directory"),
    # directional ablation: without a direction, or on too few records to choose and report on
    (["ablate", "{d}/hf", "--data", "{d}/pairs.jsonl", "-o", "{d}/abl"], 2, "give --reference"),
    (["ablate", "{d}/hf", "--data", "{d}/choices.jsonl", "--contrast", "{d}/pairs.jsonl", "-o", "{d}/abl"], 2,
     "1 records; ablate chooses its block on half"),
    (["ablate", "{d}/hf", "--data", "{d}/texts.jsonl", "--contrast", "{d}/pairs.jsonl", "-o", "{d}/abl"], 2,
     "text records; this needs prompt/answer or multiple-choice records"),
    # a metadata field of the wrong type, a report compare cannot read a row from
    (["eval", "{d}/task-types.safetensors", "--task", "count:a", "--eval-size", "8"], 1,
     "task-types.safetensors: metadata 'task': field 'window' must be an integer, got '40'"),
    (["compare", "{pt}", "{ft}", "--task", "count:a", "--eval-size", "8", "--reports", "{d}/probe-nolayers.json", "-q"], 1,
     "probe-nolayers.json: malformed wrapcli.probe report (results.layers: an empty list"),
    (["compare", "{pt}", "{ft}", "--task", "count:a", "--eval-size", "8", "--reports", "{d}/prune-inf.json", "-q"], 1,
     "prune-inf.json: malformed wrapcli.prune report (results.sweep[1].results.count:a.natural.accuracy: inf is not"),
    # the model under audit as its own control, reference or base to revert to
    (["revive", "{ft}", "--task", "count:a", *TINY, "--control", "{ft}"], 2, "--control {ft}: is the checkpoint under audit"),
    (["revive", "{d}/hf", "--data", "{d}/pairs.jsonl", "--eval-data", "{d}/pairs.jsonl", "--reference", "{d}/hf",
      "--threshold", "0.5", "-q"], 2, "--reference {d}/hf: is the checkpoint under audit itself"),
    (["prune", "{ft}", "--task", "count:a", "--k", "0,1", "--revert-to", "{c}/../{c_name}/ft.safetensors", "-q"], 2,
     "is the checkpoint under audit itself"),
    (["probe", "{ft}", "--target", "count:a", "--reference", "{d}/ft-copy.safetensors", "-q"], 2,
     "a copy of the checkpoint under audit"),
    (["eval", "{d}/empty.safetensors"], 1, "empty.safetensors: file is empty"),
    (["eval", "{d}"], 1, "no config.json"),
    # -- absurd settings --------------------------------------------------------------------
    (["train", *TINY, "--prior", "a=0.5,b=0.1", "-o", "{d}/o.safetensors"], 2, "sum to 1"),
    (["train", *TINY, "--preset", "huge", "-o", "{d}/o.safetensors"], 2, "'--preset': 'huge' is not one of"),
    (["eval", "{pt}", "--task", "count:q"], 2, "operand 'q' is not valid for count"),
    (["eval", "{pt}", "--eval-size", "0"], 2, "--eval-size"),
    (["finetune", "{pt}", *TINY, "--task", "count:b", "--lr", "inf", "-o", "{d}/o.safetensors"], 2, "finite"),
    (["finetune", "{pt}", *TINY, "--task", "count:b", "--lr", "1e9", "-o", "{d}/o.safetensors"], 2, "above"),
    (["revive", "{ft}", "--task", "count:a", *TINY, "--lr", "-1e-3"], 2, "finite and > 0"),
    (["train", *TINY, "--prior", "a=0.9,b=0.1,b=0.1", "-o", "{d}/o.safetensors"], 2, "given twice"),
    (["train", *TINY, "--task", "count:", "-o", "{d}/o.safetensors"], 2, "empty operand"),
    (["train", *TINY, "--task", "frobnicate", "-o", "{d}/o.safetensors"], 2, "unknown task family"),
    (["prune", "{ft}", "--task", "count:a", "--k", "1,1,0", "-q"], 2, "strictly increasing"),
    (["prune", "{ft}", "--task", "count:a", "--k", "two", "-q"], 2, "comma-separated integers"),
    (["prune", "{ft}", "--task", "count:a", "--unit", "atom", "-q"], 2, "'--unit': 'atom' is not one of"),
    (["prune", "{ft}", "--task", "count:a", "--eval-size", "0", "-q"], 2, "--eval-size"),
    (["compare", "{pt}", "{ft}", "--eval-size", "0", "-q"], 2, "--eval-size"),
    (["compare", "{pt}", "{ft}", "--fail-on", "removed", "-q"], 2, "--fail-on"),
    (["eval", "{pt}", "--eval-size", "8", "--conjugate", ""], 2, "'--conjugate': is empty"),
    (["eval", "{pt}", "--eval-size", "abc"], 2, "'--eval-size'"),
    (["eval", "{pt}", "--no-such-flag"], 2, "No such option: --no-such-flag"),
    (["--threads", "0", "eval", "{pt}"], 2, "--threads"),
    (["probe", "{d}/hf", "--data", "{d}/texts.jsonl", "--position", "mean-last--3", "-q"], 2, "--position"),
    (["probe", "{d}/hf", "--data", "{d}/mixed-labels.jsonl", "-q"], 1, "mixed-labels.jsonl"),
    (["probe", "{ft}", "--target", "count:a", "--eval-size", "20000000000", "-q"], 2, "'--eval-size': 20000000000 is beyond"),
    (["probe", "{ft}", "--target", "count:a", "--eval-size", "20000000", "-q"], 2, "--eval-size 20000000"),
    (["eval", "{pt}", "--eval-size", "100000000"], 2, "--eval-size 100000000: the evaluation sets would need"),
    (["compare", "{pt}", "{ft}", "--task", "count:a", "--eval-size", "100000000", "-q"], 2, "--eval-size 100000000"),
    (["train", *TINY, "--batch-size", "50000000", "-o", "{d}/o.safetensors"], 2, "--batch-size 50000000: a training"),
    (["prune", "{ft}", "--task", "count:a", "--batch-size", "50000000", "-q"], 2, "--batch-size 50000000"),
    (["prune", "{ft}", "--task", "count:a", "--eval-size", "100000000", "-q"], 2, "--eval-size 100000000"),
    (["finetune", "{pt}", *TINY, "--task", "count:b", "--eval-size", "100000000", "-o", "{d}/o.safetensors"], 2,
     "--eval-size 100000000"),
    (["revive", "{ft}", "--task", "count:a", *TINY, "--batch-size", "50000000"], 2, "--batch-size 50000000"),
    (["revive", "{ft}", "--task", "count:a", *TINY, "--steps", "2", "--save-dir", "{d}/a-file"], 2, "--save-dir"),
    (["train", *TINY, "--seed", "-1", "-o", "{d}/o.safetensors"], 2, "'--seed'"),
    # numbers past what any option means, non-finite floats, empty text, names with a newline
    (["eval", "{pt}", "--seed", "99999999999999999999999"], 2, "'--seed': 99999999999999999999999 is beyond 2,147,483,647"),
    (["compile", "counter", "--noise", "inf", "-o", "{d}/o.safetensors"], 2, "'--noise': inf is not a finite number"),
    (["--threads", "99999999999", "eval", "{pt}"], 2, "'--threads': 99999999999 is beyond"),
    (["compare", "{pt}", "{ft}", "--task", "count:a", "--drop", "nan", "-q"], 2, "'--drop': nan is not a finite number"),
    (["train", *TINY, "--task", "", "-o", "{d}/o.safetensors"], 2, "'--task': is empty"),
    (["finetune", "{d}/hf", "--data", "{d}/pairs.jsonl", "--eval-data", "", "-o", "{d}/o"], 2, "'--eval-data': is empty"),
    (["eval", "{d}/no\nsuch.safetensors"], 1, "no such.safetensors: no such file"),
    (["train", *TINY, "--layers", "100000", "--d-model", "4096", "-o", "{d}/o.safetensors"], 2,
     "--layers/--d-model 100000: training a 100000-block model of width 4096 would need"),
    (["train", *TINY, "--layers", "-1", "-o", "{d}/o.safetensors"], 2, "n_layers (--layers) must be >= 1"),
    (["facts", "{d}/world", "--retain", "200000"], 2, "would need 200,580 made-up words"),
    (["train", *TINY, "--prior", "a=nan,b=0.1", "-o", "{d}/o.safetensors"], 2, "must be a number in [0, 1]"),
    (["probe", "{d}/hf", "--data", "{d}/texts.jsonl", "--target", "count:a", "-q"], 2, "--target and --prompt"),
    (["probe", "{ft}", "--target", "count:a", "--position", "mean-last-3", "-q"], 2, "--position goes with --data"),
    (["revive", "{ft}", "--task", "count:a", *TINY, "--lr", "1e-3,1e-4"], 2, "a grid of learning rates is for --data"),
    (["revive", "{d}/hf", "--data", "{d}/pairs.jsonl", "--eval-data", "{d}/pairs.jsonl", "--threshold", "0.5",
      "--lr", "1e-3,1e-3", "--steps", "2"], 2, "given twice"),
    (["revive", "{d}/hf", "--data", "{d}/pairs.jsonl", "--eval-data", "{d}/pairs.jsonl", "--threshold", "0.5",
      "--lr", "1e-3,fast", "--steps", "2"], 2, "'fast' is not a number"),
    (["revive", "{ft}", "--task", "count:a", *TINY, "--relearn-margin", "0.1"], 2, "--relearn-margin goes with --data"),
    (["revive", "{ft}", "--task", "count:a", *TINY, "--lora", "4", "--reference", "{pt}"], 2,
     "--reference, --lora go with --data"),
    (["prune", "{ft}", "--task", "count:a", "--spurious", "1.5", "-q"], 2, "--spurious must be in [0, 1]"),
    (["prune", "{ft}", "--task", "count:a", "--revert-to", "{d}/hf", "-q"], 1, "--revert-to"),
    (["train", *TINY, "--data", "{d}/pairs.jsonl", "-o", "{d}/o"], 2, "needs both --data and --tokenizer"),
    (["train", *TINY, "--data", "{d}/pairs.jsonl", "--tokenizer", "{d}/hf", "--prior", "a=1", "-o", "{d}/o"], 2,
     "--prior apply to built-in tasks"),
    (["facts", "{d}/world", "--choices", "1"], 2, "--choices must be between 2"),
    (["facts", "{d}", "-q"], 1, "will not replace"),
    # -- user data and reports --------------------------------------------------------------
    (["eval", "{d}/hf", "--data", "{d}/long.jsonl"], 1, "long.jsonl:2: 81 tokens, more than the model's context of 64"),
    (["eval", "{d}/hf", "--data", "{d}/choice-bad.jsonl"], 1, "choice-bad.jsonl:1: 'answer' must be the index"),
    (["eval", "{d}/hf", "--data", "{d}/texts.jsonl"], 2, "this needs prompt/answer or multiple-choice records"),
    (["revive", "{d}/hf", "--data", "{d}/texts.jsonl", "--eval-data", "{d}/pairs.jsonl", "--threshold", "0.5",
      "--lr", "1e-3", "--steps", "2"], 2, "texts.jsonl: text records"),
    (["compare", "{pt}", "{ft}", "--task", "count:a", "--eval-size", "8", "--reports", "{d}/nan-report.json", "-q"], 1,
     "is not a finite number"),
    (["compare", "{pt}", "{ft}", "--task", "count:a", "--eval-size", "8", "--reports", "{d}/newer.json", "-q"], 1,
     "schema_version: 99 is not 2"),
    (["compare", "{pt}", "{ft}", "--task", "count:a", "--eval-size", "8", "--reports", "{d}/probe-copy.json", "--reports",
      "{d}/probe-copy.json", "-q"], 2, "give each report once"),
    (["eval", "{d}/schema99.safetensors", "--eval-size", "8"], 1, "schema '99'; this wrapcli reads schema 1"),
    (["eval", "{d}/lineage-dict.safetensors", "--eval-size", "8"], 1, "metadata 'lineage' must be a list of objects"),
    (["eval", "{d}/lineage-nokind.safetensors", "--eval-size", "8"], 1, "malformed lineage: lineage[0].kind: missing"),
    (["revive", "{d}/lineage-nolr.safetensors", "--task", "count:a", *TINY, "--steps", "2"], 1, "records no LR"),
    (["eval", "{d}/lineage-badseed.safetensors", "--eval-size", "8"], 1, "lineage[0].seed: expected int, got str"),
    (["eval", "{d}/task-list.safetensors", "--eval-size", "8"], 1, "metadata 'task' must be an object"),
    (["eval", "{d}/hf-listside", "--data", "{d}/pairs.jsonl"], 1, "wrapcli.json: must hold a JSON object"),
    (["eval", "{d}/hf", "--data", "{d}/deep.jsonl"], 1, "deep.jsonl:1: nested too deeply"),
    (["probe", "{d}/hf", "--data", "{d}/four.jsonl", "-q"], 1, "4 records; a probe needs at least 8"),
    (["eval", "{d}/hf", "--data", "{d}/surrogate.jsonl"], 1, "surrogate.jsonl:1: holds a lone surrogate"),
    (["eval", "{d}/hf", "--data", "{d}/latin1.jsonl"], 1, "latin1.jsonl:2: not UTF-8"),
    (["compare", "{pt}", "{ft}", "--task", "count:a", "--eval-size", "8", "--reports", "{d}/notjson.json", "-q"], 1, "notjson.json: not a JSON report"),
    (["compare", "{pt}", "{ft}", "--task", "count:a", "--eval-size", "8", "--reports", "{d}/malformed.json", "-q"], 1, "malformed.json: malformed wrapcli.probe report"),
    # -- resume states ----------------------------------------------------------------------
    ([*RESUME, "-o", "{d}/no-model.safetensors"], 1, "lacks model tensor"),
    ([*RESUME, "-o", "{d}/beyond.safetensors"], 1, "at step 99"),
    ([*RESUME, "-o", "{d}/nan-state.safetensors"], 1, "non-finite"),
    ([*RESUME, "-o", "{d}/no-meta.safetensors"], 1, "not a wrapcli resume state"),
    ([*RESUME, "-o", "{d}/random.safetensors"], 1, "unreadable resume state"),
    ([*RESUME, "-o", "{d}/truncated.safetensors"], 1, "unreadable resume state"),
    ([*RESUME, "--lr", "2e-3", "-o", "{d}/other.safetensors"], 1, "other settings"),
    # -- outputs that would replace an input, or that contradict their format ----------------
    (["eval", "{pt}", "-o", "{pt}"], 2, "is also an input"),
    (["compare", "{pt}", "{ft}", "-o", "{ft}"], 2, "is also an input"),
    (["compare", "{pt}", "{ft}", "-o", "{d}/r.json", "--markdown", "{d}/r.json"], 2, "two outputs"),
    (["compare", "{pt}", "{ft}", "-o", "{c}/../{c_name}/r.json", "--markdown", "{c}/r.json"], 2, "two outputs"),
    (["train", *TINY, "--steps", "2", "-o", "{d}/x.safetensors", "--log", "{d}/x.safetensors"], 2, "two outputs"),
    (["finetune", "{pt}", *TINY, "--task", "count:b", "--steps", "2", "-o", "{pt}"], 2, "is also an input"),
    (["prune", "{ft}", "--task", "count:a", "--k", "0,1", "-w", "{ft}", "--write-k", "1", "-q"], 2, "is also an input"),
    (["probe", "{ft}", "--target", "count:a", "-o", "{ft}", "-q"], 2, "is also an input"),
    (["revive", "{ft}", "--task", "count:a", *TINY, "-o", "{ft}"], 2, "is also an input"),
    (["export", "{pt}", "{pt}"], 2, "is also an input"),
    (["export", "{pt}", "{d}"], 1, "will not replace"),
    (["eval", "{pt}", "-o", ""], 2, "empty"),
    (["eval", "{pt}", "--eval-size", "5", "-o", "{d}"], 1, "is a directory"),
    (["eval", "{pt}", "--eval-size", "5", "-o", "{pt}/x.json"], 1, "does not exist"),
    (["train", *TINY, "-o", "{d}/nodir/x.safetensors"], 1, "does not exist"),
    (["train", *TINY, "-o", "{d}/x.bin"], 2, "-o {d}/x.bin: the name says .bin"),
    (["train", *TINY, "-o", "{d}"], 2, "must end in .safetensors"),
    (["eval", "{pt}", "--eval-size", "8", "-o", "{d}/r.safetensors"], 2, "the name says .safetensors"),
    (["prune", "{ft}", "--task", "count:a", "--k", "0,1", "-w", "{d}/pw.bin", "--write-k", "1", "-q"], 2, "-w {d}/pw.bin"),
    (["prune", "{ft}", "--task", "count:a", "--k", "0,1", "-w", "-", "--write-k", "1", "-q"], 2, "-w -"),
    (["prune", "{ft}", "--task", "count:a", "--k", "0,1", "--plot", "-", "-q"], 2, "--plot -"),
    (["train", *TINY, "--steps", "2", "-o", "{d}/t.safetensors", "--log", "{d}/no/log.json"], 1, "does not exist"),
    # a flag that does not apply to the input given is a usage error, not ignored
    (["eval", "{d}/hf", "--data", "{d}/pairs.jsonl", "--eval-size", "5", "--seed", "2"], 2, "--eval-size, --seed apply to built-in tasks"),
    (["eval", "{d}/hf", "--data", "{d}/pairs.jsonl", "--seed", "2"], 2, "--seed applies to built-in tasks"),
    (["prune", "{d}/hf", "--data", "{d}/pairs.jsonl", "--eval-size", "10", "-q"], 2, "--eval-size applies to built-in"),
    (["prune", "{ft}", "--task", "count:a", "--k", "0,1", "--write-k", "1", "-q"], 2, "--write-k applies only with -w"),
    (["compare", "{d}/hf", "{d}/hf", "--task", "{d}/pairs.jsonl", "--eval-size", "10", "-q"], 2, "--eval-size applies to built-in tasks"),
    (["revive", "{d}/hf", "--data", "{d}/pairs.jsonl", "--eval-data", "{d}/pairs.jsonl", "--threshold", "0.5",
      "--eval-size", "8", "-q"], 2, "--eval-size applies to built-in tasks"),
    (["eval", "{d}/hf", "--data", "{d}/pairs.jsonl", "--max-memory", "cpu=1GiB"], 2, "--max-memory goes with --device-map"),
    (["eval", "{pt}", "--eval-size", "8", "--device-map", "auto"], 2, "dispatch is for Hugging Face directories"),
    (["finetune", "{pt}", "--task", "count:b", "--checkpointing", "-q", "-o", "{d}/c.safetensors"], 2,
     "--checkpointing goes with --data"),
]


def _fill(args, chain, bad):
    fill = dict(pt=chain / "pt.safetensors", ft=chain / "ft.safetensors", d=bad, c=chain, c_name=chain.name)
    return [a.format(**fill) for a in args]


@pytest.mark.parametrize("args, code, message", CASES, ids=[f"{i:02d}-{a[0]}" for i, (a, _, _) in enumerate(CASES)])
def test_refused_with_one_line_and_nothing_changed(chain, bad, args, code, message):
    before = snapshot(chain, bad)
    result = runner.invoke(args=_fill(args, chain, bad))
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert result.exit_code == code and len(lines) == 1, (result.exit_code, lines)
    assert lines[0].startswith("wrapcli: error:") and _fill([message], chain, bad)[0] in lines[0], lines
    assert "Traceback" not in result.output and "Error:" not in lines[0].removeprefix("wrapcli: error:"), lines
    assert "unexpected failure" not in lines[0], lines
    assert snapshot(chain, bad) == before


@pytest.mark.parametrize("env, args, message", [
    ({"SOURCE_DATE_EPOCH": "yesterday"}, ["eval", "{pt}", "--eval-size", "8"], "SOURCE_DATE_EPOCH='yesterday': expected whole seconds"),
    ({"WRAPCLI_THREADS": "abc"}, ["eval", "{pt}", "--eval-size", "8"], "WRAPCLI_THREADS: expected a whole number >= 1, got 'abc'"),
    ({"WRAPCLI_THREADS": "100000"}, ["eval", "{pt}", "--eval-size", "8"], "100000 threads, but this machine runs"),
    ({}, ["--threads", "100000", "eval", "{pt}", "--eval-size", "8"], "--threads / WRAPCLI_THREADS: 100000 threads"),
])
def test_settings_outside_the_cli_are_checked(chain, bad, env, args, message):
    """The environment wrapcli reads (and --threads beyond what the machine runs) is a
    usage error naming the variable, before any work."""
    before = snapshot(chain, bad)
    result = runner.invoke(args=_fill(args, chain, bad), env=env)
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (result.exit_code, lines)
    assert "unexpected failure" not in lines[0] and snapshot(chain, bad) == before


def test_the_corpus_is_large_enough():
    """At least one hostile row for every command of the app (a new command too)."""
    from wrapcli.cli import app

    commands = {c.name for c in app.registered_commands}
    assert len(CASES) >= 40 and {a[0] if not a[0].startswith("--") else a[2] for a, _, _ in CASES} >= commands
