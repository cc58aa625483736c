"""wrapcli against lm-evaluation-harness itself (slow tier): on tiny local Hugging Face models
with a byte-level BPE tokenizer (spaces and letters tokenize as in GPT-2), and local task
YAMLs over local data (lm-eval's own WMDP template included by path; a raw multiple-choice
task; a loglikelihood task), every item's log-likelihoods equal lm-eval's to 1e-4 and
acc / acc_norm are identical, for

- ``--data`` with ``--fields`` and ``--template letters`` (against lm-eval's WMDP template),
- ``--data`` with ``--template raw`` (against a task whose continuations are the choices),
- ``--data`` with ``--template cloze`` (against lm-eval's default: a space, then the choice),
- ``--lm-eval-task`` (records built by lm-eval) for all three tasks,

and ``--samples-format lm-eval`` writes what lm-eval's own EvaluationTracker writes for the
same run: the same keys (lm-eval's SampleResult), documents, arguments, hashes, metrics
and, to 1e-4, responses."""

import json
import os
from pathlib import Path

import pytest

from wrapcli.cli import app

from cli import run

pytestmark = pytest.mark.slow

CAPS = {"France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin", "Portugal": "Lisbon",
        "Austria": "Vienna", "Norway": "Oslo", "Poland": "Warsaw", "Greece": "Athens", "Ireland": "Dublin"}


def bpe_model(path: Path, arch: str) -> Path:
    """A tiny causal LM with a byte-level BPE tokenizer trained here on a few sentences."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PreTrainedTokenizerFast

    corpus = [f"What is the capital of {c}? {v}." for c, v in CAPS.items()] * 5 + [
        "The following are multiple choice questions (with answers) about biology.", "A. B. C. D. Answer:"] * 5
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    n = len(fast)
    config = (GPT2Config(vocab_size=n, n_layer=2, n_head=2, n_embd=32, n_positions=256, bos_token_id=0, eos_token_id=0)
              if arch == "gpt2" else
              LlamaConfig(vocab_size=n, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                          hidden_size=32, intermediate_size=64, max_position_embeddings=256, bos_token_id=0,
                          eos_token_id=0, pad_token_id=0))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def write_tasks(d: Path) -> dict:
    """The data (parquet for the letters task, JSONL for the raw ones) and task YAMLs."""
    import random

    import lm_eval
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng, rows = random.Random(0), []
    for i, (country, city) in enumerate(CAPS.items()):
        wrong = [c for c in CAPS.values() if c != city]
        rng.shuffle(wrong)
        choices = wrong[: 2 + i % 3]
        choices.insert(i % len(choices), city)
        rows.append({"question": f" What is the capital of {country}? ", "choices": choices,
                     "answer": choices.index(city), "subject": "biology"})
    pq.write_table(pa.Table.from_pylist([{**r, "choices": (r["choices"] + ["Nowhere"] * 4)[:4]} for r in rows]),
                   d / "letters.parquet")
    raw = [{"question": f"The capital of {c} is", "choices": [f" {x}" for x in r["choices"]], "answer": r["answer"]}
           for c, r in zip(CAPS, rows)]
    (d / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in raw))
    cloze = [{**r, "choices": [c.strip() for c in r["choices"]]} for r in raw]  # as datasets ship them
    (d / "cloze.jsonl").write_text("".join(json.dumps(r) + "\n" for r in cloze))
    wmdp = Path(lm_eval.__file__).parent / "tasks" / "wmdp" / "_default_template_yaml"
    tasks = d / "tasks"
    tasks.mkdir()
    (tasks / "letters.yaml").write_text(
        f"task: wmdp_local\ninclude: {wmdp}\ndataset_path: parquet\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {d / 'letters.parquet'}\n"
        'description: "The following are multiple choice questions (with answers) about biology.\\n\\n"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {d / 'raw.jsonl'}\ntest_split: test\n"
    (tasks / "raw.yaml").write_text(
        f"task: caps_raw\n{common}output_type: multiple_choice\ndoc_to_text: '{{{{question}}}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: answer\ntarget_delimiter: ''\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    (tasks / "cloze.yaml").write_text(
        common.replace("raw.jsonl", "cloze.jsonl") + "task: caps_cloze\noutput_type: multiple_choice\n"
        "doc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    (tasks / "ll.yaml").write_text(
        f"task: caps_ll\n{common}output_type: loglikelihood\ndoc_to_text: '{{{{question}}}}'\n"
        "doc_to_target: '{{choices[answer]}}'\ntarget_delimiter: ''\nmetric_list:\n  - metric: acc\n  - metric: perplexity\n")
    return {"dir": tasks, "parquet": d / "letters.parquet", "raw": d / "raw.jsonl", "cloze": d / "cloze.jsonl"}


def lm_eval_samples(model_dir: Path, tasks: Path, out: Path) -> dict:
    """lm-eval's own run (HFLM, log_samples) and the samples files its EvaluationTracker
    writes, read back: {task: [sample, ...]}."""
    os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(model_dir), batch_size=4, device="cpu")
    result = lm_eval.simple_evaluate(model=lm, tasks=["wmdp_local", "caps_raw", "caps_cloze", "caps_ll"],
                                     task_manager=TaskManager(include_path=str(tasks)), log_samples=True)
    tracker = EvaluationTracker(output_path=str(out))
    tracker.date_id = "parity"  # set by save_results_aggregated, which this run does not call
    got = {}
    for name, samples in result["samples"].items():
        tracker.save_results_samples(name, samples)
        (file,) = out.rglob(f"samples_{name}_*.jsonl")
        got[name] = [json.loads(line) for line in file.read_text().splitlines()]
    return got


def wrapcli_samples(*args, out: Path) -> list[dict]:
    run("eval", *args, "--samples", out, "--samples-format", "lm-eval", "--device", "cpu", "-q", "-o", out.with_suffix(".json"))
    return [json.loads(line) for line in out.read_text().splitlines()]


def same_items(ours: list[dict], theirs: list[dict], *, whole: bool) -> None:
    """Every item's responses to 1e-4 and its metrics identical; with ``whole``, every
    other field lm-eval writes identical too (prompts, continuations, documents, hashes)."""
    from lm_eval.result_schema import SampleResult

    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert set(SampleResult.__required_keys__) <= a.keys()
        assert set(a) == set(b)
        for ra, rb in zip(a["filtered_resps"], b["filtered_resps"]):
            assert float(ra[0]) == pytest.approx(float(rb[0]), abs=1e-4) and ra[1] == rb[1]
        for metric in b["metrics"]:
            if metric == "perplexity":
                assert a[metric] == pytest.approx(b[metric], abs=1e-4)
            else:
                assert a[metric] == b[metric], (metric, a["doc_id"])
        assert a["arguments"] == b["arguments"] or not whole
        if whole:
            rest = {"doc_id", "doc", "target", "filter", "metrics", "doc_hash", "prompt_hash", "target_hash"}
            assert {k: a[k] for k in rest} == {k: b[k] for k in rest}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_wrapcli_scores_as_lm_eval_does(arch, tmp_path):
    model = bpe_model(tmp_path / "m", arch)
    files = write_tasks(tmp_path)
    theirs = lm_eval_samples(model, files["dir"], tmp_path / "lm-eval")
    for name in ("wmdp_local", "caps_raw", "caps_cloze", "caps_ll"):  # records built by lm-eval
        ours = wrapcli_samples(model, "--lm-eval-task", name, "--include-path", files["dir"], out=tmp_path / f"{name}.jsonl")
        same_items(ours, theirs[name], whole=True)
    letters = wrapcli_samples(model, "--data", files["parquet"], "--fields", "prompt=question,choices=choices,answer=answer",
                              "--template", "letters", out=tmp_path / "letters-samples.jsonl")
    same_items(letters, theirs["wmdp_local"], whole=False)  # the parquet row is the document, not lm-eval's doc
    assert [a["arguments"] for a in letters] == [b["arguments"] for b in theirs["wmdp_local"]]
    raw = wrapcli_samples(model, "--data", files["raw"], "--fields", "prompt=question", out=tmp_path / "raw-samples.jsonl")
    same_items(raw, theirs["caps_raw"], whole=False)
    cloze = wrapcli_samples(model, "--data", files["cloze"], "--fields", "prompt=question", "--template", "cloze",
                            out=tmp_path / "cloze-samples.jsonl")
    same_items(cloze, theirs["caps_cloze"], whole=False)
    assert [a["arguments"] for a in cloze] == [b["arguments"] for b in theirs["caps_cloze"]]
    report = json.loads((tmp_path / "letters-samples.json").read_text())["results"]["scores"]
    assert report["choice_accuracy"] == pytest.approx(sum(s["acc"] for s in theirs["wmdp_local"]) / len(CAPS))
    assert report["choice_accuracy_norm"] == pytest.approx(sum(s["acc_norm"] for s in theirs["wmdp_local"]) / len(CAPS))


def test_an_lm_eval_task_that_wrapcli_cannot_score_is_refused_in_one_line(tmp_path):
    from cli import one_line_error, runner

    (tmp_path / "tasks").mkdir()
    (tmp_path / "d.jsonl").write_text('{"q": "x", "a": "y"}\n')
    (tmp_path / "tasks" / "gen.yaml").write_text(
        f"task: gen_local\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tmp_path / 'd.jsonl'}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n")
    bpe_model(tmp_path / "m", "gpt2")
    args = ["eval", str(tmp_path / "m"), "--include-path", str(tmp_path / "tasks"), "-q", "--lm-eval-task"]
    one_line_error(runner.invoke(app, [*args, "gen_local"]),
                   "--lm-eval-task gen_local: output type generate_until; wrapcli scores multiple_choice and "
                   "loglikelihood tasks", code=2)
    one_line_error(runner.invoke(app, [*args, "no_such_task"]), "--lm-eval-task no_such_task: no such task", code=2)
