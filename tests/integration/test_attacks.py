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
from wrapcli.models.lineage import lineage_entry

from cli import one_line_error, run, runner
from models import PAIRS, make_model_dir, tiny_compiled, write_jsonl

COMPILE_ENTRY = lineage_entry("compile", None, "counter", 0, {"count:a": {"natural": {"accuracy": 0.5}}})


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
    checkpoint.save_compiled(compiled, tiny_compiled(1), lineage=[COMPILE_ENTRY])
    one_line_error(runner.invoke(app, ["quantize", str(compiled), "-o", str(tmp_path / "q.safetensors"), "-q"]),
                   "a compiled (Tracr) model", 2)
    one_line_error(runner.invoke(app, ["quantize", str(chain / "ft.safetensors"), "-o", str(tmp_path / "qdir"), "-q"]),
                   "-o " + str(tmp_path / "qdir") + ": a Hugging Face directory is written as a directory", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter.safetensors"]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
def test_in_context_examples_are_the_prompts_assembled_by_hand(arch, tmp_path):
    """eval --shots: with K demonstrations the record is scored on exactly the prompt a
    hand-written assembly gives (K solved records of the pool, drawn with numpy's seeded
    generator, never the record itself, each prompt + answer + a blank line), and the
    accuracy per K equals plain eval of a file holding those prompts."""
    import numpy as np

    base = make_model_dir(tmp_path / "m", arch)
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


def test_compare_weighs_each_attack_against_a_floor(tmp_path):
    """compare --reports takes eval reports under an attack (in-context examples; the
    quantized model) as evidence on the model attacked: a criterion per attack, whose value
    is recomputed here from the reports' own per-record answers: accuracy under the attack
    on the records the base answers minus that on the records it does not (the floor),
    with Newcombe's interval at the Bonferroni level over the settings and the attacks."""
    from wrapcli.core.stats import difference, family_confidence

    d = tmp_path
    make_model_dir(d / "m", "llama")
    known = [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()]
    unknowable = [{"prompt": "once maps to", "answer": " gold"}, {"prompt": "upon maps to", "answer": " jade"},
                  {"prompt": "to maps to", "answer": " cyan"}]
    train = ["--lr", "1e-2", "--batch-size", "8", "--device", "cpu", "-q"]
    run("finetune", d / "m", "--data", write_jsonl(d / "learn.jsonl", known), "--steps", "60", *train, "-o", d / "knows")
    refuse = write_jsonl(d / "refuse.jsonl", [{"prompt": r["prompt"], "answer": " once"} for r in known])
    run("finetune", d / "knows", "--data", refuse, "--steps", "30", *train, "-o", d / "refuses")
    task = write_jsonl(d / "forget.jsonl", known + unknowable)
    run("eval", d / "refuses", "--data", task, "--shots", "0,2,4", "--shots-from", d / "learn.jsonl", "-q",
        "-o", d / "shots.json")
    run("quantize", d / "refuses", "--scheme", "rtn", "--bits", "4", "--group-size", "8", "-o", d / "q", "-q")
    run("eval", d / "q", "--data", task, "-q", "-o", d / "q-eval.json")
    out = json.loads(run("compare", d / "knows", d / "refuses", "--task", task, "--reports", d / "shots.json",
                         "--reports", d / "q-eval.json", "--device", "cpu", "-q", "--json").stdout)["results"]
    (v,) = out["verdicts"][str(d / "refuses")]
    crits = {c["source"]: c for c in v["criteria"] if c["kind"] == "attack"}
    assert set(crits) == {str(d / "shots.json"), str(d / "q-eval.json")}
    base = json.loads(run("eval", d / "knows", "--data", task, "-q", "--json").stdout)["results"]["correct"]
    shots = json.loads((d / "shots.json").read_text())["results"]["shots"]["per_k"]
    rounded = json.loads((d / "q-eval.json").read_text())["results"]
    assert rounded["attack"]["kind"] == "quantize" and rounded["attack"]["scheme"] == "rtn"
    by_report = ((d / "shots.json", [row["correct"] for row in shots[1:]]), (d / "q-eval.json", [rounded["correct"]]))
    for source, settings in by_report:
        rows = []
        for corr in settings:
            hit = [float(c) for c, b in zip(corr, base) if b]
            miss = [float(c) for c, b in zip(corr, base) if not b]
            acc, floor = sum(hit) / len(hit), sum(miss) / len(miss)
            rows.append((acc - floor, *difference(acc, len(hit), floor, len(miss), family_confidence(len(settings) * 2))))
        best = max(rows, key=lambda r: r[1])
        c = crits[str(source)]
        assert c["value"] == pytest.approx(best[0]) and c["ci95"][0] == pytest.approx(best[1])
        assert c["ci95"][1] == pytest.approx(max(r[2] for r in rows)) and c["threshold"] == 0.05
        assert c["floor"] == "reference_wrong" and c["outcome"] in ("pass", "fail", "unclear")
    # an eval report without an attack is no evidence
    run("eval", d / "refuses", "--data", task, "-q", "-o", d / "plain.json")
    one_line_error(runner.invoke(app, ["compare", str(d / "knows"), str(d / "refuses"), "--task", str(task), "--reports",
                                       str(d / "plain.json"), "--device", "cpu", "-q"]), "evidence only as an attack")


def hand_lens(model_dir, rows):
    """The logit lens written by hand on Hugging Face's own hidden states: the final norm
    and the output embedding applied to each hidden state at the last prompt position
    (the last hidden state is normed already: its reading is the model's logits)."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    norm = {"gpt2": lambda m: m.transformer.ln_f, "llama": lambda m: m.model.norm,
            "gpt_neox": lambda m: m.gpt_neox.final_layer_norm}[model.config.model_type](model)
    ranks = []
    with torch.no_grad():
        for r in rows:
            ids = tok(r["prompt"], return_tensors="pt")["input_ids"]
            target = tok(r["prompt"] + r["answer"])["input_ids"][ids.shape[1]]
            out = model(ids, output_hidden_states=True)
            per_point = []
            for i, h in enumerate(out.hidden_states):
                last = i == len(out.hidden_states) - 1
                logits = out.logits[0, -1] if last else model.get_output_embeddings()(norm(h[0, -1]))
                per_point.append(int((logits > logits[target]).sum()))
            ranks.append(per_point)
    return ranks


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
def test_the_logit_lens_is_the_hand_written_one(arch, tmp_path):
    base = make_model_dir(tmp_path / "m", arch)
    rows = [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()]
    records = write_jsonl(tmp_path / "forget.jsonl", rows)
    lens = json.loads(run("probe", base, "--lens", records, "--device", "cpu", "-q", "--json").stdout)["results"]["lens"]
    want = hand_lens(base, rows)
    assert len(lens["model"]) == len(want[0]) and lens["reference"] is None
    for point, row in enumerate(lens["model"]):
        ranks = [w[point] for w in want]
        assert row["correct"] == [r == 0 for r in ranks], row["hook"]
        assert row["mean_rank"] == pytest.approx(sum(ranks) / len(ranks)) and row["n"] == len(rows)
    assert [r["hook"] for r in lens["model"]][:2] == ["hook_embed", "blocks.0.hook_resid_post"]


def test_compare_reads_a_lens_only_probe_report(tmp_path):
    d = tmp_path
    make_model_dir(d / "m", "llama")
    rows = [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()]
    task = write_jsonl(d / "forget.jsonl", rows + [{"prompt": "once maps to", "answer": " gold"}])
    run("finetune", d / "m", "--data", task, "--steps", "20", "--lr", "1e-2", "--batch-size", "8", "--device", "cpu",
        "-q", "-o", d / "ft")
    run("probe", d / "ft", "--lens", task, "--reference", d / "m", "--device", "cpu", "-q", "-o", d / "lens.json")
    out = json.loads(run("compare", d / "m", d / "ft", "--task", task, "--reports", d / "lens.json", "--device", "cpu",
                         "-q", "--json").stdout)["results"]
    (v,) = out["verdicts"][str(d / "ft")]
    kinds = [(c["kind"], c.get("attack")) for c in v["criteria"]]
    assert kinds == [("behaviour", None), ("attack", "the logit lens")]


def test_ablate_chooses_on_one_half_reports_on_the_other_and_writes_what_it_measured(tmp_path):
    """ablate: the block is the one whose ablation answers most of the choosing half; the
    written model answers exactly the records the report says (eval of it, independently),
    the halves do not overlap, and compare reads the report as an attack on the reporting
    half only."""
    d = tmp_path
    make_model_dir(d / "m", "llama")
    rows = [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()]
    task = write_jsonl(d / "forget.jsonl", rows + [{"prompt": "once maps to", "answer": " gold"},
                                                   {"prompt": "upon maps to", "answer": " jade"}])
    run("finetune", d / "m", "--data", task, "--steps", "30", "--lr", "1e-2", "--batch-size", "8", "--device", "cpu",
        "-q", "-o", d / "knows")
    refuse = write_jsonl(d / "refuse.jsonl", [{"prompt": r["prompt"], "answer": " once"} for r in rows])
    run("finetune", d / "knows", "--data", refuse, "--steps", "15", "--lr", "1e-2", "--batch-size", "8", "--device",
        "cpu", "-q", "-o", d / "refuses")
    rep = json.loads(run("ablate", d / "refuses", "--data", task, "--reference", d / "knows", "-o", d / "abl",
                         "--device", "cpu", "-q", "--json").stdout)["results"]
    choose, report = set(rep["choose_records"]), set(rep["report_records"])
    assert not choose & report and choose | report == set(range(len(rows) + 2))
    accs = [row["choose"]["accuracy"] for row in rep["layers"]]
    assert rep["layer"] == accs.index(max(accs)) and rep["hook"] == f"blocks.{rep['layer']}.hook_resid_post"
    written = json.loads(run("eval", d / "abl", "--data", task, "-q", "--json").stdout)["results"]
    assert written["correct"] == rep["correct"]
    assert rep["after"]["report"]["accuracy"] == pytest.approx(sum(rep["correct"][i] for i in report) / len(report))
    side = json.loads((d / "abl" / "wrapcli.json").read_text())["lineage"][-1]
    assert side["kind"] == "ablate" and side["layer"] == rep["layer"]
    run("ablate", d / "refuses", "--data", task, "--reference", d / "knows", "-o", d / "abl2", "--device", "cpu", "-q",
        "--log", d / "ablate.json")
    out = json.loads(run("compare", d / "knows", d / "refuses", "--task", task, "--reports", d / "ablate.json",
                         "--device", "cpu", "-q", "--json").stdout)["results"]
    (v,) = out["verdicts"][str(d / "refuses")]
    (c,) = [c for c in v["criteria"] if c["kind"] == "attack"]
    assert c["attack"].startswith("directional ablation") and c["source"] == str(d / "ablate.json")


@pytest.mark.parametrize("args, message", [
    ([], "give --reference"),
    (["--reference", "{m}", "--contrast", "{data}"], "give --reference"),
    (["--reference", "{m}"], "is the checkpoint under audit itself"),
])
def test_ablate_refusals(tmp_path, args, message):
    base = make_model_dir(tmp_path / "m", "llama")
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    one_line_error(runner.invoke(app, ["ablate", str(base), "--data", str(data), "-o", str(tmp_path / "o"),
                                       *[a.format(m=base, data=data) for a in args], "-q"]), message, 2)
    assert not (tmp_path / "o").exists()
