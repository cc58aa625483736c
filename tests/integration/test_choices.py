"""Multiple-choice records: eval --data scores each choice's summed log-likelihood as a
continuation of the prompt, and acc / acc_norm as lm-evaluation-harness defines them,
checked against a hand-written scorer that runs Hugging Face's own full forward pass on
each prompt + choice, on the GPT-2, Llama and GPT-NeoX shapes; and every other command
that reads records takes them."""

import json

import pytest

from wrapcli.cli import app

from cli import one_line_error, run, runner
from models import PAIRS, WORDS, archs, make_model_dir, write_jsonl


def mc_records():
    """Three to five choices each, of different lengths in characters (so acc_norm can
    pick another choice than acc), the correct one at varying places."""
    recs = []
    for i, (w, v) in enumerate(PAIRS.items()):
        wrong = [x for x in WORDS if x != v][: 2 + i % 3]
        choices = [f" {x}" for x in wrong]
        choices.insert(i % len(choices), f" {v}")
        recs.append({"prompt": f"{w} maps to", "choices": choices, "answer": i % len(wrong)})
    recs.append({"prompt": "once upon", "choices": [" to", " maps to red"], "answer": 1})  # a multi-token choice
    return recs


def reference_scores(model_dir, recs):
    """Summed log-likelihood of every choice from a full forward of prompt + choice alone."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(model_dir))  # the file itself, whatever the model type
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    out = []
    with torch.no_grad():
        for r in recs:
            n_prompt = len(tok(r["prompt"])["input_ids"])
            lls = []
            for c in r["choices"]:
                ids = tok(r["prompt"] + c, return_tensors="pt")["input_ids"]
                lp = torch.log_softmax(model(ids).logits[0].double(), -1)
                lls.append(sum(float(lp[t - 1, ids[0, t]]) for t in range(n_prompt, ids.shape[1])))
            out.append(lls)
    return out


@pytest.mark.parametrize("arch", archs())
def test_choice_scores_match_a_full_forward(arch, tmp_path):
    model_dir = make_model_dir(tmp_path / arch, arch)
    recs = mc_records()
    write_jsonl(tmp_path / "mc.jsonl", recs)
    r = json.loads(run("eval", model_dir, "--data", tmp_path / "mc.jsonl", "--samples", tmp_path / "s.jsonl",
                       "--device", "cpu", "-q", "--json").stdout)["results"]
    lines = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text().splitlines()]
    want = reference_scores(model_dir, recs)
    acc = acc_norm = 0
    for rec, line, lls in zip(recs, lines, want):
        assert line["loglikelihoods"] == pytest.approx(lls, abs=1e-6)
        picked = max(range(len(lls)), key=lambda j: lls[j])
        normed = [ll / len(c) for ll, c in zip(lls, rec["choices"])]
        picked_norm = max(range(len(lls)), key=lambda j: normed[j])
        assert (line["picked"], line["picked_norm"]) == (picked, picked_norm)
        acc += picked == rec["answer"]
        acc_norm += picked_norm == rec["answer"]
    s = r["scores"]
    n = len(recs)
    assert s["metric"] == "choice_accuracy" and s["n"] == s["n_records"] == n
    assert s["choice_accuracy"] == s["accuracy"] == acc / n and s["choice_accuracy_norm"] == acc_norm / n
    assert s["chance"] == pytest.approx(sum(1 / len(rec["choices"]) for rec in recs) / n)
    # the loss is the correct choice's, per token: the mean over records of a one-token choice
    gold = [-lls[rec["answer"]] for rec, lls in zip(recs[:-1], want[:-1])]
    assert [l["loss"] for l in lines[:-1]] == pytest.approx(gold, abs=1e-5)


def test_every_record_command_reads_choices(tmp_path):
    """finetune trains on the correct choice, prune scores choice accuracy with chance as
    its baseline, compare's behaviour is choice accuracy, revive's curve too."""
    d = tmp_path
    make_model_dir(d / "m", "llama")
    recs = mc_records()[:-1]
    write_jsonl(d / "mc.jsonl", recs)
    ft = json.loads(run("finetune", d / "m", "--data", d / "mc.jsonl", "--lr", "1e-2", "--steps", "40", "--batch-size", "8",
                        "--device", "cpu", "-q", "--json", "-o", d / "ft").stdout)["results"]
    assert ft["after"]["metric"] == "choice_accuracy" and ft["after"]["choice_accuracy"] == 1.0
    assert ft["before"]["loss"] > ft["after"]["loss"]
    pr = json.loads(run("prune", d / "ft", "--data", d / "mc.jsonl", "--k", "0,1,2", "--device", "cpu", "-q",
                        "--json").stdout)["results"]
    assert pr["sweep"][0]["results"]["data"]["accuracy"] == 1.0
    cmp = json.loads(run("compare", d / "m", d / "ft", "--task", d / "mc.jsonl", "--device", "cpu", "-q",
                         "--json").stdout)["results"]
    beh = cmp["behaviour"][str(d / "mc.jsonl")]
    assert beh[str(d / "ft")]["metric"] == "choice_accuracy" and beh[str(d / "ft")]["accuracy"] == 1.0
    assert beh[str(d / "m")]["majority_baseline"] == pytest.approx(sum(1 / len(r["choices"]) for r in recs) / len(recs))
    rv = json.loads(run("revive", d / "m", "--data", d / "mc.jsonl", "--eval-data", d / "mc.jsonl", "--threshold", "0.9",
                        "--lr", "1e-2", "--steps", "10", "--batch-size", "8", "--seeds", "2", "--device", "cpu", "-q",
                        "--json").stdout)["results"]
    assert rv["metric"] == "choice_accuracy" and rv["relearning"]["floor"]["source"] == "chance"


@pytest.mark.parametrize("record, message", [
    ({"prompt": "red maps to", "choices": [" blue"], "answer": 0}, "at least two"),
    ({"prompt": "red maps to", "choices": [" blue", " gold"], "answer": 2}, "index of the correct choice"),
    ({"prompt": "red maps to", "choices": [" blue", " gold"], "answer": "gold"}, "index of the correct choice"),
    ({"prompt": "red maps to", "choices": [" blue", " blue"], "answer": 0}, "repeats a choice"),
    ({"prompt": "red maps to", "choices": [" blue", ""], "answer": 0}, "non-empty strings"),
    ({"prompt": "", "choices": [" blue", " gold"], "answer": 0}, "needs 'prompt'"),
])
def test_bad_choice_records(record, message, tmp_path):
    make_model_dir(tmp_path / "m")
    write_jsonl(tmp_path / "bad.jsonl", [record])
    result = runner.invoke(app, ["eval", str(tmp_path / "m"), "--data", str(tmp_path / "bad.jsonl"), "-q"])
    one_line_error(result, "bad.jsonl:1: ", 1)
    assert message in result.stderr


def test_kinds_a_command_cannot_use_are_usage_errors(tmp_path):
    make_model_dir(tmp_path / "m")
    write_jsonl(tmp_path / "text.jsonl", [{"text": "red maps to blue"}])
    write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "red maps to", "answer": " blue"},
                                           {"prompt": "red maps to", "choices": [" blue", " gold"], "answer": 0}])
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "m"), "--data", str(tmp_path / "text.jsonl"), "-q"]),
                   "this needs prompt/answer or multiple-choice records", 2)
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "m"), "--data", str(tmp_path / "mixed.jsonl"), "-q"]),
                   "mixes multiple-choice and prompt/answer records", 1)


@pytest.mark.parametrize("arch", archs())
def test_bf16_weights_score_close_to_fp32(arch, tmp_path):
    """eval --data --precision bf16 keeps the weights in bf16 (not autocast): the same
    records' choice log-likelihoods stay within bf16's rounding of the fp32 ones."""
    model_dir = make_model_dir(tmp_path / arch, arch)
    write_jsonl(tmp_path / "mc.jsonl", mc_records())
    lls = {}
    for precision in ("fp32", "bf16"):
        r = json.loads(run("eval", model_dir, "--data", tmp_path / "mc.jsonl", "--samples", tmp_path / f"{precision}.jsonl",
                           "--precision", precision, "--device", "cpu", "-q", "--json").stdout)
        assert r["precision"] == precision and r["results"]["precision"] == precision
        lls[precision] = [ll for l in (tmp_path / f"{precision}.jsonl").read_text().splitlines()
                          for ll in json.loads(l)["loglikelihoods"]]
    worst = max(abs(a - b) for a, b in zip(lls["fp32"], lls["bf16"]))
    assert 0 < worst < 0.1, worst  # bf16 differs (the weights really are bf16), but only by rounding


def test_compare_weighs_the_multiple_choice_view_of_a_free_form_capability(tmp_path):
    """compare --view FREE=MC: a model taught to answer ' once' to every prompt loses the
    free-form pairs; the verdict on the free-form task carries a view criterion whose
    figures are the tuned model's choice accuracy on the multiple-choice twin minus chance
    (read back from compare's own behaviour table), and the pair is in the report."""
    d = tmp_path
    make_model_dir(d / "m", "llama")
    free = write_jsonl(d / "free.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])
    mc = write_jsonl(d / "mc.jsonl", mc_records()[:-1])
    train = ["--lr", "1e-2", "--batch-size", "8", "--device", "cpu", "-q"]
    run("finetune", d / "m", "--data", free, "--steps", "60", *train, "-o", d / "knows")
    write_jsonl(d / "refuse.jsonl", [{"prompt": f"{w} maps to", "answer": " once"} for w in PAIRS])
    run("finetune", d / "knows", "--data", d / "refuse.jsonl", "--steps", "30", *train, "-o", d / "refuses")
    out = json.loads(run("compare", d / "knows", d / "refuses", "--view", f"{free}={mc}", "--device", "cpu", "-q",
                         "--json").stdout)["results"]
    assert out["views"] == [{"free_form": str(free), "multiple_choice": str(mc)}]
    assert set(out["behaviour"]) == {str(free), str(mc)}
    (v,) = [v for v in out["verdicts"][str(d / "refuses")] if v["task"] == str(free)]
    (view,) = [c for c in v["criteria"] if c["kind"] == "view"]
    tuned_mc = out["behaviour"][str(mc)][str(d / "refuses")]
    assert view["source"] == str(mc) and view["value"] == pytest.approx(tuned_mc["accuracy"] - tuned_mc["majority_baseline"])
    assert v["criteria"][0]["kind"] == "behaviour" and v["criteria"][0]["outcome"] == "pass"  # the free-form view fell
    assert v["label"] == {"pass": "wrapped", "fail": "suppressed", "unclear": "inconclusive"}[view["outcome"]]
    # the order is free-form first, and a view names two JSONL files
    one_line_error(runner.invoke(app, ["compare", str(d / "knows"), str(d / "refuses"), "--view", f"{mc}={free}",
                                       "--device", "cpu", "-q"]), "needs prompt/answer records first", 2)
    one_line_error(runner.invoke(app, ["compare", str(d / "knows"), str(d / "refuses"), "--view", str(free),
                                       "--device", "cpu", "-q"]), "expected FREE.jsonl=MC.jsonl", 2)
