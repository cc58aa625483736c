"""Fine-tuning a third-party-style HF model on user JSONL, with a tokenizer built here."""

import json

import pytest
import torch

from wrapcli.cli import app
from wrapcli.core.errors import WrapError
from wrapcli.models import checkpoint
from wrapcli.textdata.textscore import score_text
from wrapcli.textdata.userdata import IGNORE, read_jsonl, text_data

from cli import runner
from models import PAIRS, archs, make_model_dir, tiny_hf, write_jsonl


@pytest.fixture
def model_dir(tmp_path):
    return make_model_dir(tmp_path / "hf")


@pytest.fixture
def pairs(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"{w} maps to", "answer": f" {v}"} for w, v in PAIRS.items()])


def test_labels_cover_only_the_answer(model_dir, pairs):
    ck = checkpoint.load(model_dir)
    data = text_data(pairs, model_dir, ck.model, seed=0)
    ids, labels = data.examples[0]
    assert len(ids) == 4 and labels[:3] == [IGNORE] * 3 and labels[3] == ids[3]


def test_score_matches_hf_loss(model_dir, pairs):
    ck = checkpoint.load(model_dir)
    data = text_data(pairs, model_dir, ck.model, seed=0)
    ids, labels = data.examples[0]
    with torch.no_grad():
        hf = ck.model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()
    data.examples = data.examples[:1]
    assert score_text(ck.model, data)["loss"] == pytest.approx(hf, rel=1e-5)


@pytest.mark.parametrize("arch", archs())
def test_finetune_on_pairs_learns_them(tmp_path, arch, pairs):
    model_dir = make_model_dir(tmp_path / f"hf_{arch}", arch)
    out = tmp_path / "ft"
    res = runner.invoke(app, ["finetune", str(model_dir), "--data", str(pairs), "--lr", "1e-2",
                              "--steps", "60", "--batch-size", "8", "--device", "cpu", "-q", "--json",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)["results"]
    assert r["after"]["loss"] < r["before"]["loss"] - 1.0
    assert r["after"]["exact_match"] == 1.0 and r["before"]["exact_match"] < 0.5
    ck = checkpoint.load(out)  # an HF directory with tokenizer and lineage
    assert (out / "tokenizer.json").exists()
    assert ck.lineage[-1]["kind"] == "finetune" and ck.lineage[-1]["data_sha256"] == r["data"]["sha256"]


def test_text_records(tmp_path, model_dir):
    stories = write_jsonl(tmp_path / "s.jsonl", [{"text": "once upon red maps to blue"}] * 3)
    res = runner.invoke(app, ["finetune", str(model_dir), "--data", str(stories), "--steps", "3",
                              "--batch-size", "2", "--device", "cpu", "-q", "-o", str(tmp_path / "ft")])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"prompt": "a", "answer": "b"}\nnot json\n', ":2: not valid JSON"),
        ('{"prompt": "a"}\n', ":1: needs"),
        ('{"text": ""}\n', "non-empty"),
        ('{"text": "a"}\n{"prompt": "a", "answer": "b"}\n', "mixes"),
        ("\n\n", "no records"),
        ("[1, 2]\n", "JSON object"),
    ],
)
def test_bad_jsonl(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(WrapError, match=message):
        read_jsonl(path)


def test_cli_errors(tmp_path, model_dir, pairs):
    cases = [
        (["finetune", str(tmp_path / "m.safetensors"), "--data", str(pairs), "-o", str(tmp_path / "o")], 1, "tokenizer"),
        (["finetune", str(model_dir), "--data", str(pairs), "-o", str(tmp_path / "o.safetensors")], 2, "directory"),
        (["finetune", str(model_dir), "-o", str(tmp_path / "o")], 2, "exactly one of"),
        (["finetune", str(model_dir), "--task", "count:b", "-o", str(tmp_path / "o.safetensors")], 1, "no wrapcli vocabulary"),
        (["finetune", str(model_dir), "--data", str(pairs), "--spurious", "0.5", "--mix", "0.1", "-o", str(tmp_path / "o")],
         2, "--spurious, --mix apply to built-in tasks"),
        (["finetune", str(model_dir), "--task", "count:b", "--eval-data", str(pairs), "-o", str(tmp_path / "o.safetensors")],
         2, "--eval-data goes with --data"),
    ]
    from models import tiny

    checkpoint.save(tmp_path / "m.safetensors", tiny())
    for args, code, message in cases:
        res = runner.invoke(app, args + ["--device", "cpu"])
        assert res.exit_code == code and message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("arch", archs())
def test_answer_logits_equal_the_full_forward_on_padded_batches(tmp_path, arch):
    """Logits at the scored positions only, on a right-padded batch of records of different
    lengths, against Hugging Face's full forward; the training loss against HF's own."""
    from wrapcli.textdata.userdata import TextData, answer_logits

    model = tiny_hf(arch).eval()
    examples = [([5, 6, 7, 8], [IGNORE, IGNORE, 7, 8]), ([9, 10], [IGNORE, 10]),
                ([11, 12, 13, 14, 15, 16], [IGNORE] * 4 + [15, 16])]
    data = TextData(examples, pad_id=0, seed=0, identity="t")
    batch = data.collate([0, 1, 2], "cpu")
    with torch.no_grad():
        logits, target, rows, place = answer_logits(model, batch)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        hf_loss = model(**batch).loss
        ours = data.loss(model, batch, None)
    want = [(r, t) for r, (_, y) in enumerate(examples) for t in range(len(y) - 1) if y[t + 1] != IGNORE]
    assert rows.tolist() == [r for r, _ in want] and place.tolist() == [0, 1, 0, 0, 1]
    assert torch.allclose(logits, torch.stack([full[r, t] for r, t in want]), atol=1e-5)
    assert target.tolist() == [examples[r][1][t + 1] for r, t in want]
    assert ours.item() == pytest.approx(hf_loss.item(), rel=1e-5)
