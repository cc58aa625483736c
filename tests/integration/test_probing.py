"""Probes: hooked activations against HF's own hidden states, the probe against
synthetic features with a known answer, and the CLI."""

import json

import numpy as np
import pytest
import torch

from wrapcli.analyses.probing import fit_probe, split
from wrapcli.cli import app
from wrapcli.core.errors import WrapError
from wrapcli.models.adapters import Adapter, last_positions

from cli import one_line_error, run, runner
from models import archs, make_model_dir, tiny_hf, write_jsonl


def fit(x, labels, seed=0):
    train, test = split(labels, seed)
    return fit_probe(x, labels, train, test)


@pytest.mark.parametrize("arch", archs())
def test_hooked_residual_stream_equals_hf_hidden_states(arch):
    model = tiny_hf(arch).eval()
    x = torch.randint(0, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    adapter = Adapter(model)
    ours = adapter.residual_stream(x)
    with torch.no_grad():
        hf = model(input_ids=x, output_hidden_states=True).hidden_states
    assert len(ours) == len(hf) == 3
    for a, b in zip(ours[:-1], hf[:-1]):
        assert torch.allclose(a, b, atol=1e-6)
    final_norm = {"gpt2": "transformer.ln_f", "llama": "model.norm", "gpt_neox": "gpt_neox.final_layer_norm",
                  "mistral": "model.norm", "qwen2": "model.norm"}[arch]
    with torch.no_grad():  # HF applies the final norm to its last hidden state; we do not
        assert torch.allclose(model.get_submodule(final_norm)(ours[-1]), hf[-1], atol=1e-5)


def test_probe_decodes_a_linear_feature_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=1200)
    centers = rng.normal(size=(4, 16)) * 3  # separable classes with a margin
    x = centers[labels] + rng.normal(size=(1200, 16)) * 0.3
    good = fit(x, labels)
    assert good["accuracy"] > 0.99 and good["n"] == 300 and good["ci95"][0] > 0.98
    shuffled = fit(x, rng.permutation(labels))
    assert shuffled["accuracy"] < shuffled["majority_baseline"] + 0.08


def test_probe_solver_reaches_the_lbfgs_optimum():
    """Overlapping classes (no margin), so the optimum matters: the fast solver's probe
    scores as sklearn's lbfgs run to a tight tolerance, on the same split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, size=1600)
    x = rng.normal(size=(6, 32))[labels] + rng.normal(size=(1600, 32)) * 3.0
    got = fit(x, labels, seed=3)
    x_tr, x_te, y_tr, y_te = train_test_split(x.astype(np.float32), labels, test_size=0.25,
                                              random_state=3, stratify=labels)
    scaler = StandardScaler().fit(x_tr)
    ref = LogisticRegression(solver="lbfgs", tol=1e-10, max_iter=20_000).fit(scaler.transform(x_tr), y_tr)
    assert 0.4 < got["accuracy"] < 0.95  # neither trivial nor hopeless
    assert got["accuracy"] == pytest.approx(ref.score(scaler.transform(x_te), y_te), abs=1 / len(y_te))


def test_probe_refuses_one_class():
    with pytest.raises(WrapError, match="single class"):
        fit(np.zeros((10, 2)), np.ones(10))


def test_grouped_split_keeps_pairs_together():
    labels = np.array([1, 0] * 50)
    groups = np.repeat(np.arange(50), 2)  # one prompt, a true and a false completion
    train, test = split(labels, 0, groups=groups)
    assert not set(groups[train]) & set(groups[test]) and len(test) == 26
    with pytest.raises(WrapError, match="one group"):
        split(labels, 0, groups=np.zeros(100))


def test_mean_last_k_skips_padding():
    h = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    got = last_positions(2)(h, mask)
    assert got.flatten().tolist() == [1.5, 8.5]  # mean of positions 1,2 and 3,4


def test_probe_cli_json(chain, tmp_path):
    out = tmp_path / "probe.json"
    run("probe", chain / "ft.safetensors", "--target", "count:a", "--reference", chain / "pt.safetensors",
        "--eval-size", "200", "--device", "cpu", "-q", "-o", out)
    res = json.loads(out.read_text())["results"]
    assert [(r["layer"], r["hook"]) for r in res["layers"]] == [
        (-1, "hook_embed"), (0, "blocks.0.hook_resid_post"), (1, "blocks.1.hook_resid_post")]
    assert res["target_task"] == "count:a" and res["prompt_task"] == "count:a" and len(res["random_init_seeds"]) == 3
    for row in res["layers"]:
        assert {"accuracy", "ci95", "majority_baseline", "random_init", "reference", "margin"} <= set(row)
        assert row["n_train"] == 150 and row["n_test"] == row["n"] == 50
        assert row["random_init"]["accuracy"] == max(row["random_init"]["per_init"])
        m = row["margin"]
        bar = max(row["random_init"]["accuracy"], row["majority_baseline"])
        assert m["value"] == pytest.approx(row["accuracy"] - bar)
        assert m["ci_bonferroni"][0] <= m["ci95"][0] <= m["value"] <= m["ci95"][1] <= m["ci_bonferroni"][1]
    assert sum(res["split"]["class_balance"]["test"].values()) == 50
    att = res["attention"]["model"]
    assert len(att) == 2 * 2 and all(0 <= r["a"] + r["b"] + r["c"] <= 1 + 1e-5 for r in att)
    other = json.loads(run("probe", chain / "ft.safetensors", "--target", "count:a", "--prompt", "count:b",
                           "--eval-size", "100", "--no-attention", "--device", "cpu", "-q", "--json").stdout)
    assert other["results"]["target"] == "count:a (on count:b prompts)"


def test_relabelled_target_is_labelled_with_its_answer_operand(chain):
    """Probing count:a@b (randFT data) reads count(b) off count-a prompts."""
    from wrapcli.models.checkpoint import load
    from wrapcli.runs.probe import task_probe_data

    ck = load(chain / "pt.safetensors")
    tokens, labels, _, _ = task_probe_data(ck, "count:a@b", None, 100, 0)
    want_tokens, want_labels, _, _ = task_probe_data(ck, "count:b", "count:a", 100, 0)
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_array_equal(labels, want_labels)
    assert (labels != task_probe_data(ck, "count:a", None, 100, 0)[1]).any()


def test_probe_hf_directory_on_labelled_text(tmp_path):
    model_dir = make_model_dir(tmp_path / "hf", "llama")
    rows = [{"text": f"once upon {w} maps to {w}", "label": int(i % 2)} for i, w in enumerate(["red", "blue"] * 20)]
    data = write_jsonl(tmp_path / "l.jsonl", rows)
    res = json.loads(run("probe", model_dir, "--data", data, "--position", "mean-last-2", "--device", "cpu",
                         "-q", "--json").stdout)["results"]
    assert len(res["layers"]) == 3 and res["n"] == 40 and "attention" not in res
    assert res["layers"][1]["accuracy"] == 1.0  # the label is the word, read off the tokens
    assert not res["split"]["grouped"]


def test_probe_user_data_groups_and_label_types(tmp_path):
    model_dir = make_model_dir(tmp_path / "hf", "llama")
    rows = [{"text": f"the capital {i} is {w}", "label": w == "true", "group": i}
            for i in range(30) for w in ("true", "false")]
    res = json.loads(run("probe", model_dir, "--data", write_jsonl(tmp_path / "g.jsonl", rows), "--device", "cpu",
                         "-q", "--json").stdout)["results"]
    assert res["split"]["grouped"] and res["split"]["class_balance"]["test"] == {"False": 8, "True": 8}
    mixed = [{"text": "a", "label": 1}, {"text": "b", "label": "1"}, {"text": "c", "label": 0}]
    one_line_error(runner.invoke(app, ["probe", str(model_dir), "--data", str(write_jsonl(tmp_path / "m.jsonl", mixed)),
                                       "--device", "cpu"]), "labels mix types")
    half = [{"text": "a", "label": 1, "group": 1}, {"text": "b", "label": 0}]
    one_line_error(runner.invoke(app, ["probe", str(model_dir), "--data", str(write_jsonl(tmp_path / "h.jsonl", half)),
                                       "--device", "cpu"]), "h.jsonl:2: 'group' must be on every record")


@pytest.mark.parametrize("init_seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_a_random_init_model_is_never_decodable(tmp_path, init_seed):
    """The probe of an untrained network of the CPU preset's shape, held against the best of
    three other random inits, must not pass compare's probe criterion."""
    from wrapcli.models import checkpoint
    from wrapcli.models.build import ModelShape, build_config, build_model
    from wrapcli.tasks import vocab
    from wrapcli.tasks.sequences import seq_len
    from wrapcli.tasks.spec import TaskSpec, parse_components, parse_prior
    from wrapcli.verdicts import rules as verdicts

    model = build_model(build_config(ModelShape("gpt2", 4, 4, 128), vocab.VOCAB_SIZE, seq_len(48)), init_seed)
    spec = TaskSpec(components=parse_components("count"), prior=parse_prior("a=0.9,b=0.1"), text_len=48)
    checkpoint.save(tmp_path / "rand.safetensors", model, vocab=vocab.TOKENS, task=spec.to_dict())
    res = json.loads(run("probe", tmp_path / "rand.safetensors", "--target", "count:a", "--eval-size", "1200",
                         "--no-attention", "--device", "cpu", "-q", "--json").stdout)["results"]
    assert max(l["accuracy"] for l in res["layers"]) > max(l["majority_baseline"] for l in res["layers"]) + 0.2
    assert verdicts.probe(res, verdicts.Thresholds(), "probe.json")["outcome"] != "pass"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--target", "count"], 2, "fixed operand"),
        (["--target", "count:a", "--eval-size", "2"], 2, "--eval-size"),
        (["--data", "{one}"], 1, "at least two values"),
        (["--data", "{labelled}", "--position", "middle"], 2, "--position"),
        ([], 2, "give --target"),
    ],
)
def test_bad_input(chain, tmp_path, args, code, message):
    write_jsonl(tmp_path / "one.jsonl", [{"text": "x", "label": 1}] * 3)
    write_jsonl(tmp_path / "labelled.jsonl", [{"text": "x", "label": i % 2} for i in range(8)])
    ckpt = str(chain / "ft.safetensors")
    if "{labelled}" in args:
        ckpt = str(make_model_dir(tmp_path / "hf"))
    args = [a.format(one=tmp_path / "one.jsonl", labelled=tmp_path / "labelled.jsonl") for a in args]
    one_line_error(runner.invoke(app, ["probe", ckpt, *args, "--device", "cpu", "-q"]), message, code)


def test_hf_model_without_vocabulary_cannot_take_built_in_tasks(tmp_path):
    model_dir = make_model_dir(tmp_path / "hf")
    one_line_error(runner.invoke(app, ["probe", str(model_dir), "--target", "count:a", "--device", "cpu"]),
                   "no wrapcli vocabulary")


def test_probe_in_bf16_keeps_bf16_weights_and_reads_what_fp32_reads(tmp_path, monkeypatch):
    """--precision bf16: every model the probe runs (the checkpoint, its reference, the
    random inits) holds bf16 weights, and the features, hence each layer's accuracy, stay
    those of fp32 up to bf16 rounding."""
    from wrapcli.runs import probe as runs_probe

    model_dir = make_model_dir(tmp_path / "hf", "llama")
    rows = [{"text": f"once upon {w} maps to {w}", "label": int(i % 2)} for i, w in enumerate(["red", "blue"] * 20)]
    data = write_jsonl(tmp_path / "l.jsonl", rows)
    seen = []
    real = runs_probe.layer_features

    def spy(model, chunks, pick, device="cpu"):
        seen.append({p.dtype for p in model.parameters()})
        return real(model, chunks, pick, device)

    monkeypatch.setattr(runs_probe, "layer_features", spy)
    reference = make_model_dir(tmp_path / "ref", "llama", seed=1)  # not the model itself: that is refused
    common = ["probe", model_dir, "--data", data, "--reference", reference, "--random-inits", "2", "--device", "cpu",
              "-q", "--json"]
    full = json.loads(run(*common).stdout)
    assert all(s == {torch.float32} for s in seen)
    seen.clear()
    half = json.loads(run(*common, "--precision", "bf16").stdout)
    assert len(seen) == 4 and all(s == {torch.bfloat16} for s in seen)  # model, two random inits, reference
    assert half["precision"] == "bf16" and full["precision"] == "fp32"
    for a, b in zip(full["results"]["layers"], half["results"]["layers"]):
        assert abs(a["accuracy"] - b["accuracy"]) <= 0.2  # 16 test records: at most 3 flip on rounding
    one_line_error(runner.invoke(app, ["probe", str(model_dir), "--data", str(data), "--precision", "fp8"]),
                   "'--precision'", code=2)
