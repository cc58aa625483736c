"""Probes: hooked activations against HF's own hidden states, the probe against
synthetic features with a known answer, and the CLI."""

import json

import numpy as np
import pytest
import torch

from wrapcli.adapters import Adapter
from wrapcli.cli import app
from wrapcli.errors import WrapError
from wrapcli.probing import fit_probe, last_positions

from cli import one_line_error, run, runner
from models import tiny_hf
from test_userdata import make_model_dir, write_jsonl


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
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
    with torch.no_grad():  # HF applies the final norm to its last hidden state; we do not
        assert torch.allclose(adapter.final_norm(ours[-1]), hf[-1], atol=1e-5)


def test_probe_decodes_a_linear_feature_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=1200)
    centers = rng.normal(size=(4, 16)) * 3  # separable classes with a margin
    x = centers[labels] + rng.normal(size=(1200, 16)) * 0.3
    assert fit_probe(x, labels)["accuracy"] > 0.99
    shuffled = fit_probe(x, rng.permutation(labels))
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
    got = fit_probe(x, labels, seed=3)
    x_tr, x_te, y_tr, y_te = train_test_split(x.astype(np.float32), labels, test_size=0.25,
                                              random_state=3, stratify=labels)
    scaler = StandardScaler().fit(x_tr)
    ref = LogisticRegression(solver="lbfgs", tol=1e-10, max_iter=20_000).fit(scaler.transform(x_tr), y_tr)
    assert 0.4 < got["accuracy"] < 0.95  # neither trivial nor hopeless
    assert got["accuracy"] == pytest.approx(ref.score(scaler.transform(x_te), y_te), abs=1 / len(y_te))


def test_probe_refuses_one_class():
    with pytest.raises(WrapError, match="single class"):
        fit_probe(np.zeros((10, 2)), np.ones(10))


def test_mean_last_k_skips_padding():
    h = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    got = last_positions(2)(h, mask)
    assert got.flatten().tolist() == [1.5, 8.5]  # mean of positions 1,2 and 3,4


def test_probe_cli_json(chain, tmp_path):
    out = tmp_path / "probe.json"
    run("probe", chain / "ft.safetensors", "--target", "count:a", "--reference", chain / "pt.safetensors",
        "--n", "200", "--device", "cpu", "-q", "-o", out)
    res = json.loads(out.read_text())["results"]
    assert [r["layer"] for r in res["layers"]] == ["B0", "B1", "B2"]
    for row in res["layers"]:
        assert {"accuracy", "majority_baseline", "random_init", "reference"} <= set(row)
        assert row["n_train"] == 150 and row["n_test"] == 50
    att = res["attention"]["model"]
    assert len(att) == 2 * 2 and all(0 <= r["a"] + r["b"] + r["c"] <= 1 + 1e-5 for r in att)
    other = json.loads(run("probe", chain / "ft.safetensors", "--target", "count:a", "--prompt", "count:b",
                           "--n", "100", "--no-attention", "--device", "cpu", "-q", "--json").stdout)
    assert other["results"]["target"] == "count:a (on count:b prompts)"


def test_relabelled_target_is_labelled_with_its_answer_operand(chain):
    """Probing count:a@b (randFT data) reads count(b) off count-a prompts."""
    from wrapcli.checkpoint import load
    from wrapcli.probing import _task_probe_data

    ck = load(chain / "pt.safetensors")
    tokens, labels, _ = _task_probe_data(ck, "count:a@b", None, 100, 0)
    want_tokens, want_labels, _ = _task_probe_data(ck, "count:b", "count:a", 100, 0)
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_array_equal(labels, want_labels)
    assert (labels != _task_probe_data(ck, "count:a", None, 100, 0)[1]).any()


def test_probe_hf_directory_on_labelled_text(tmp_path):
    model_dir = make_model_dir(tmp_path / "hf", "llama")
    rows = [{"text": f"once upon {w} maps to {w}", "label": int(i % 2)} for i, w in enumerate(["red", "blue"] * 20)]
    data = write_jsonl(tmp_path / "l.jsonl", rows)
    res = json.loads(run("probe", model_dir, "--data", data, "--position", "mean-last-2", "--device", "cpu",
                         "-q", "--json").stdout)["results"]
    assert len(res["layers"]) == 3 and res["n"] == 40 and "attention" not in res
    assert res["layers"][1]["accuracy"] == 1.0  # the label is the word, read off the tokens


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "count"], "fixed operand"),
        (["--target", "count:a", "--n", "2"], "--n"),
        (["--data", "{one}"], "at least two values"),
        (["--data", "{labelled}", "--position", "middle"], "--position"),
        ([], "give --target"),
    ],
)
def test_bad_input(chain, tmp_path, args, message):
    write_jsonl(tmp_path / "one.jsonl", [{"text": "x", "label": 1}] * 3)
    write_jsonl(tmp_path / "labelled.jsonl", [{"text": "x", "label": i % 2} for i in range(4)])
    ckpt = str(chain / "ft.safetensors")
    if "{labelled}" in args:
        ckpt = str(make_model_dir(tmp_path / "hf"))
    args = [a.format(one=tmp_path / "one.jsonl", labelled=tmp_path / "labelled.jsonl") for a in args]
    one_line_error(runner.invoke(app, ["probe", ckpt, *args, "--device", "cpu", "-q"]), message)


def test_hf_model_without_vocabulary_cannot_take_built_in_tasks(tmp_path):
    model_dir = make_model_dir(tmp_path / "hf")
    one_line_error(runner.invoke(app, ["probe", str(model_dir), "--target", "count:a", "--device", "cpu"]),
                   "no wrapcli vocabulary")
