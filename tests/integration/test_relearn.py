"""revive --data: the relearning test of unlearning audits, on a tiny HF model whose history
is known: it learned 8 word pairs, then was fine-tuned a little to answer " maps" to all of
them; relearning fine-tunes it on the pairs again against a model that never knew them.
The curve is checked against an independent run of finetune --data with the same seed."""

import json

import numpy as np
import pytest

from wrapcli.cli import app
from wrapcli.core.stats import bootstrap_ratio

from cli import one_line_error, run, runner
from models import PAIRS, make_model_dir, write_jsonl

FT = ["--batch-size", "8", "--device", "cpu", "-q"]
RELEARN = ["--lr", "1e-3", "--steps", "30", "--batch-size", "8", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    d = tmp_path_factory.mktemp("relearn")
    pairs = [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()]
    write_jsonl(d / "all.jsonl", pairs)
    write_jsonl(d / "relearn.jsonl", pairs[:4])
    write_jsonl(d / "heldout.jsonl", pairs[4:])
    write_jsonl(d / "forget.jsonl", [dict(p, answer=" maps") for p in pairs])  # never a right answer
    make_model_dir(d / "never", "llama")
    run("finetune", d / "never", "--data", d / "all.jsonl", "--steps", "80", "--lr", "1e-2", *FT, "-o", d / "original")
    run("finetune", d / "original", "--data", d / "forget.jsonl", "--steps", "10", "--lr", "3e-3", *FT, "-o", d / "forgot")
    return d


def test_relearning_curve_against_a_control(history):
    d = history
    out = d / "relearn-report.json"
    run("revive", d / "forgot", "--data", d / "all.jsonl", "--eval-data", d / "all.jsonl", "--reference", d / "original",
        "--control", d / "never", "--seeds", "3", *RELEARN, "-o", out)
    r = json.loads(out.read_text())["results"]
    revived, control = r["models"]
    assert r["reference"]["accuracy"] == 1.0 and r["reference"]["metric"] == r["metric"] == "exact_match"
    assert r["threshold"] == pytest.approx(0.9)
    # every record it scores was also trained on: nothing is held out, so the criterion cannot decide
    crit = r["relearning"]
    assert crit["n_held_out"] == 0 and crit["outcome"] == "unclear" and "not in --data" in crit["settle"]
    assert [g["lr"] for g in r["lr_grid"]] == [1e-3] and r["lr_grid"][0]["models"] == r["models"]
    assert r["eval_steps"] == [0, 5, 7, 10, 15, 20, 30] and revived["accuracy"]["n"] == 8
    # independent: finetune --data with the same seed, steps and LR scores the same before and after
    for seed in (0, 2):
        ft = json.loads(run("finetune", d / "forgot", "--data", d / "all.jsonl", "--eval-data", d / "all.jsonl",
                            "--seed", seed, *RELEARN, "--json", "-o", d / f"check{seed}").stdout)["results"]
        assert revived["accuracy"]["per_seed"][seed][0] == ft["before"]["exact_match"]
        assert revived["accuracy"]["per_seed"][seed][-1] == ft["after"]["exact_match"]
        assert revived["loss"]["per_seed"][seed][-1] == pytest.approx(ft["after"]["loss"], rel=1e-5)
    start = revived["accuracy"]["mean"][0]
    assert start < 0.9
    assert revived["recovered_fraction"] == pytest.approx([(m - start) / (1.0 - start) for m in revived["accuracy"]["mean"]])
    # the speed-up is the ratio of geometric-mean steps, censored at the run's length
    steps = lambda m: [30 if s is None else s for s in m["steps_to_threshold"]["per_seed"]]  # noqa: E731
    assert None not in revived["steps_to_threshold"]["per_seed"] and min(revived["steps_to_threshold"]["per_seed"]) > 0
    assert r["speedup"]["value"] == pytest.approx(bootstrap_ratio(steps(control), steps(revived))[0])
    # compare reads it as evidence about the records file, matched by content
    res = json.loads(run("compare", d / "original", d / "forgot", "--task", d / "all.jsonl", "--reports", out,
                         "--device", "cpu", "-q", "--json").stdout)["results"]
    (v,) = res["verdicts"][str(d / "forgot")]
    assert [c["kind"] for c in v["criteria"]] == ["behaviour", "revive"]


@pytest.mark.parametrize("args, message", [
    (["--data", "{d}/relearn.jsonl"], "needs --eval-data"),
    (["--data", "{d}/relearn.jsonl", "--eval-data", "{d}/heldout.jsonl"], "give --threshold"),
])
def test_relearning_bad_input(history, args, message):
    d = history
    one_line_error(runner.invoke(app, ["revive", str(d / "forgot"), *[a.format(d=d) for a in args], "--lr", "1e-3",
                                       "--steps", "2", "--device", "cpu"]), message, 2)


def test_relearning_usage_errors(history):
    d = history
    result = runner.invoke(app, ["revive", str(d / "forgot"), "--data", str(d / "relearn.jsonl"), "--task", "count:a"])
    assert result.exit_code == 2 and "exactly one of --task" in result.stderr
    result = runner.invoke(app, ["revive", str(d / "forgot"), "--data", str(d / "relearn.jsonl"), "--scratch"])
    assert result.exit_code == 2 and "--control DIR" in result.stderr


def test_eval_data_and_samples(history):
    """eval --data: the summary agrees with the sample lines, and each predicted answer is
    what Hugging Face's generate says."""
    d = history
    out, samples = d / "eval.json", d / "samples.jsonl"
    r = json.loads(run("eval", d / "forgot", "--data", d / "all.jsonl", "--samples", samples, "--device", "cpu",
                       "-q", "-o", out, "--json").stdout)["results"]
    lines = [json.loads(l) for l in samples.read_text().splitlines()]
    assert r["n"] == len(lines) == 8
    assert sum(l["correct"] for l in lines) / 8 == r["scores"]["exact_match"]
    assert np.mean([l["loss"] for l in lines]) == pytest.approx(r["scores"]["loss"])  # one answer token each
    # independent: Hugging Face's own greedy decoding of one token after each prompt
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(d / "forgot"))
    model = AutoModelForCausalLM.from_pretrained(str(d / "forgot")).eval()
    for line in lines:
        ids = tok(line["prompt"], return_tensors="pt")["input_ids"]
        greedy = model.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)[0, -1:]
        assert line["predicted"] == tok.decode(greedy)
        assert line["correct"] == (line["predicted"].strip() == line["expected"].strip())
    assert {l["prompt"] for l in lines} == {f"{w} maps to" for w in PAIRS}
    result = runner.invoke(app, ["eval", str(d / "forgot"), "--samples", str(d / "s2.jsonl")])
    assert result.exit_code == 2 and "--samples goes with --data" in result.stderr


def test_compare_depth_of_the_change_against_a_full_forward(history, tmp_path):
    """compare's KL per answer token equals a brute-force computation on full forwards, record
    by record; two-token answers give a second position."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = history
    recs = [{"prompt": f"{w} maps", "answer": f" to {v}"} for w, v in PAIRS.items()]  # 2 answer tokens
    write_jsonl(tmp_path / "two.jsonl", recs)
    res = json.loads(run("compare", d / "original", d / "forgot", "--task", tmp_path / "two.jsonl", "--device", "cpu",
                         "-q", "--json", "--markdown", tmp_path / "a.md").stdout)["results"]
    rows = res["depth"][str(tmp_path / "two.jsonl")][str(d / "forgot")]
    tok = AutoTokenizer.from_pretrained(str(d / "original"))
    a = AutoModelForCausalLM.from_pretrained(str(d / "original")).eval()
    b = AutoModelForCausalLM.from_pretrained(str(d / "forgot")).eval()
    want = [0.0, 0.0]
    with torch.no_grad():
        for r in recs:
            ids = tok(r["prompt"] + r["answer"], return_tensors="pt")["input_ids"]
            n_prompt = len(tok(r["prompt"])["input_ids"])
            la = torch.log_softmax(a(ids).logits[0], -1)
            lb = torch.log_softmax(b(ids).logits[0], -1)
            for k in range(2):  # position n_prompt - 1 + k predicts answer token k
                t = n_prompt - 1 + k
                want[k] += float((la[t].exp() * (la[t] - lb[t])).sum()) / len(recs)
    assert [r["position"] for r in rows] == [1, 2] and [r["n"] for r in rows] == [8, 8]
    assert [r["kl"] for r in rows] == pytest.approx(want, rel=1e-4)
    assert "How deep the change goes" in (tmp_path / "a.md").read_text()
    assert res["weights"][0]["l2_distance"] > 0


def test_the_first_curve_may_train_the_model_already_loaded(history):
    """revive hands the model it scored first to the first curve instead of loading it
    again (8B loads take tens of seconds): the curve is the same as from a fresh load."""
    from wrapcli.models import checkpoint
    from wrapcli.runs.revive import run_text_curve
    from wrapcli.training.loop import TrainConfig

    d = history
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, eval_every=6)
    args = (d / "forgot", d / "relearn.jsonl", d / "heldout.jsonl", cfg, [0, 1], {0, 3, 6}, "cpu")
    fresh = run_text_curve(*args)
    box = [checkpoint.load(d / "forgot").model]
    reused = run_text_curve(*args, loaded=box)
    assert box == [] and reused == fresh


def test_revive_never_holds_two_models(history, monkeypatch):
    """The reference and the control are loaded, checked and scored before the checkpoint,
    and each is gone before the next load: at every load no other loaded model is alive
    (the memory a LoRA relearning needs is then one model's, like a plain peft loop's)."""
    import gc
    import weakref

    from wrapcli.models import checkpoint

    alive, loads, real = [], [], checkpoint.load

    def load(path, *args, **kwargs):
        gc.collect()
        loads.append((str(path), sum(r() is not None for r in alive)))
        ck = real(path, *args, **kwargs)
        alive.append(weakref.ref(ck.model))
        return ck

    monkeypatch.setattr(checkpoint, "load", load)
    d = history
    run("revive", d / "forgot", "--data", d / "relearn.jsonl", "--eval-data", d / "heldout.jsonl", "--reference",
        d / "original", "--control", d / "never", "--seeds", "2", "--lr", "1e-3", "--steps", "2", "--batch-size", "4",
        "--device", "cpu", "-q")
    assert [p for p, _ in loads[:3]] == [str(d / "never"), str(d / "original"), str(d / "forgot")]
    assert all(n == 0 for _, n in loads), loads
    assert len(loads) == 6  # the three, then seed 1 of the checkpoint and both seeds of the control load afresh
