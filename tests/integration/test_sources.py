"""Record files as the field ships them (wrapcli/textdata/sources.py): every format reads as
its JSONL twin, a field map and an answer given as a letter or a choice's text, the letters
template equal to lm-evaluation-harness's own MMLU/WMDP template rendered by lm-eval's
Jinja, and every record command giving the same numbers on a parquet file with a field map
as on its JSONL twin."""

import json

import pytest

from wrapcli.cli import app
from wrapcli.textdata.sources import reading
from wrapcli.textdata.userdata import read_records

from cli import one_line_error, run, runner
from models import PAIRS, WORDS, make_model_dir, write_jsonl

FIELDS = "prompt=question,choices=options,answer=label"


def twin_records():
    """Multiple-choice records (wrapcli's keys) and the same as a dataset would ship them:
    a question column, an options list, the answer as a letter, a subject."""
    recs, rows = [], []
    for i, (w, v) in enumerate(PAIRS.items()):
        wrong = [x for x in WORDS if x != v][:3]
        choices = [f" {x}" for x in wrong]
        choices.insert(i % 4, f" {v}")
        recs.append({"prompt": f"{w} maps to", "choices": choices, "answer": i % 4})
        rows.append({"question": f"{w} maps to", "options": choices, "label": "ABCD"[i % 4], "subject": "colour_maps"})
    return recs, rows


def write_formats(d, rows) -> dict:
    """The rows in every format --data reads (parquet and arrow through pyarrow, the
    directories through Hugging Face datasets' own save_to_disk)."""
    import csv

    import datasets
    import pyarrow as pa

    datasets.disable_progress_bars()
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    out = {"parquet": d / "r.parquet", "arrow": d / "r.arrow", "json": d / "r.json", "json-split": d / "splits.json",
           "csv": d / "r.csv", "disk": d / "disk", "dict": d / "dict", "hub": d / "hub"}
    pq.write_table(table, out["parquet"])
    with pa.OSFile(str(out["arrow"]), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    out["json"].write_text(json.dumps(rows))
    out["json-split"].write_text(json.dumps({"train": rows[:2], "test": rows}))
    with open(out["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["question", "A", "B", "C", "D", "label", "subject"])
        w.writeheader()
        for r in rows:
            w.writerow({"question": r["question"], **dict(zip("ABCD", r["options"])), "label": r["label"],
                        "subject": r["subject"]})
    datasets.Dataset.from_list(rows).save_to_disk(str(out["disk"]))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:2]),
                          "test": datasets.Dataset.from_list(rows)}).save_to_disk(str(out["dict"]))
    (out["hub"] / "data").mkdir(parents=True)
    pq.write_table(table, out["hub"] / "data" / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:2]), out["hub"] / "data" / "train-00000-of-00001.parquet")
    return out


def test_every_format_reads_as_its_jsonl_twin(tmp_path):
    recs, rows = twin_records()
    twin = write_jsonl(tmp_path / "twin.jsonl", recs)
    files = write_formats(tmp_path, rows)
    expected = read_records(twin)[1]
    for name, path in files.items():
        fields = FIELDS.replace("choices=options", "choices=A+B+C+D") if name == "csv" else FIELDS
        split = "test" if name in ("json-split", "dict", "hub") else None
        with reading(fields, split):
            kind, got, _ = read_records(path)
        assert kind == "choice", name
        assert [{k: r[k] for k in ("prompt", "choices", "answer")} for r in got] == expected, name


def test_an_answer_may_be_an_index_a_letter_or_the_choice_text(tmp_path):
    rows = [{"q": "red maps to", "c": [" blue", " gold", " jade"], "a": a} for a in (2, "C", " jade", "c", "2")]
    write_jsonl(tmp_path / "r.jsonl", rows)
    with reading("prompt=q,choices=c,answer=a"):
        assert [r["answer"] for r in read_records(tmp_path / "r.jsonl")[1]] == [2, 2, 2, 2, 2]
    write_jsonl(tmp_path / "bad.jsonl", [{"q": "red maps to", "c": [" blue", " gold"], "a": "E"}])
    make_model_dir(tmp_path / "m")
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "m"), "--data", str(tmp_path / "bad.jsonl"),
                                       "--fields", "prompt=q,choices=c,answer=a", "-q"]),
                   "bad.jsonl:1: answer 'E' matches no choice (give its index 0 to 1, its letter A to B or its text)")


def test_a_table_in_wrapcli_s_own_columns_needs_no_field_map(tmp_path):
    """A parquet file whose columns are already prompt/choices/answer, the answer given as
    a letter, reads without --fields: the answer becomes the index as with a map."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    recs, rows = twin_records()
    pq.write_table(pa.Table.from_pylist([{"prompt": r["question"], "choices": r["options"], "answer": r["label"]}
                                         for r in rows]), tmp_path / "own.parquet")
    assert read_records(tmp_path / "own.parquet")[1] == recs


@pytest.mark.parametrize("fields, message, code", [
    ("prompt=question,choices", "'choices' is not KEY=COLUMN", 2),
    ("query=question", "unknown record key 'query'", 2),
    ("prompt=question,prompt=options", "prompt is mapped twice", 2),
    ("prompt=question+options", "only choices gathers several columns", 2),
    ("prompt=stem,choices=options,answer=label", "r.parquet:1: no column 'stem' (columns: question, options, label, "
                                                 "subject)", 1),
])
def test_a_bad_field_map_is_one_line(tmp_path, fields, message, code):
    _, rows = twin_records()
    files = write_formats(tmp_path, rows)
    make_model_dir(tmp_path / "m")
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "m"), "--data", str(files["parquet"]), "--fields", fields,
                                       "-q"]), message, code=code)


def test_a_directory_of_several_splits_needs_split(tmp_path):
    _, rows = twin_records()
    files = write_formats(tmp_path, rows)
    make_model_dir(tmp_path / "m")
    for name in ("dict", "hub"):
        one_line_error(runner.invoke(app, ["eval", str(tmp_path / "m"), "--data", str(files[name]), "--fields", FIELDS,
                                           "-q"]), "pick one with --split")
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "m"), "--data", str(files["dict"]), "--fields", FIELDS,
                                       "--split", "dev", "-q"]), "no split 'dev' (splits: train, test)")


def test_letters_is_lm_evals_own_mmlu_and_wmdp_template(tmp_path):
    """The prompt --template letters builds equals lm-eval's installed MMLU/WMDP template
    rendered by lm-eval's own Jinja environment, with its description line."""
    from pathlib import Path

    import lm_eval
    import yaml
    from lm_eval.utils import apply_template

    _, rows = twin_records()
    files = write_formats(tmp_path, rows)
    root = Path(lm_eval.__file__).parent / "tasks"
    for path in (root / "mmlu" / "default" / "_default_template_yaml", root / "wmdp" / "_default_template_yaml"):
        template = yaml.safe_load(path.read_text())
        assert template["doc_to_choice"] == ["A", "B", "C", "D"]
        with reading(FIELDS + ",subject=subject", template="letters"):
            got = read_records(files["parquet"])[1]
        for row, rec in zip(rows, got):
            doc = {"question": row["question"], "choices": row["options"]}
            description = "The following are multiple choice questions (with answers) about colour maps.\n\n"
            assert rec["prompt"] == description + apply_template(template["doc_to_text"], doc)
            assert rec["choices"] == [" A", " B", " C", " D"] and rec["choice_lengths"] == [1, 1, 1, 1]


def test_every_record_command_reads_a_parquet_file_as_its_jsonl_twin(tmp_path):
    """eval, finetune, prune, revive and compare give the same numbers on a parquet file
    read through a field map as on the JSONL file of the same records."""
    d = tmp_path
    make_model_dir(d / "m", "llama")
    recs, rows = twin_records()
    twin = write_jsonl(d / "twin.jsonl", recs)
    parquet = write_formats(d, rows)["parquet"]

    def results(*args, data, fields=()):
        out = json.loads(run(*[str(a).replace("DATA", str(data)) for a in args], *fields, "--device", "cpu", "-q",
                             "--json").stdout)["results"]
        return json.loads(json.dumps(out).replace(str(data), "DATA"))

    def both(*args):
        a, b = results(*args, data=twin), results(*args, data=parquet, fields=("--fields", FIELDS))
        a.pop("source", None), b.pop("source", None)
        return a, b

    a, b = both("eval", d / "m", "--data", "DATA")
    assert a == b and a["scores"]["n"] == len(recs)
    ft_twin = results("finetune", d / "m", "--data", "DATA", "--lr", "1e-2", "--steps", "6", "--batch-size", "4",
                      "-o", d / "ft_twin", data=twin)
    ft_parquet = results("finetune", d / "m", "--data", "DATA", "--lr", "1e-2", "--steps", "6", "--batch-size", "4",
                         "-o", d / "ft_parquet", data=parquet, fields=("--fields", FIELDS))
    for key in ("before", "after", "log"):
        assert ft_twin[key] == ft_parquet[key]
    a, b = both("prune", d / "m", "--data", "DATA", "--k", "0,1,2")
    assert a["sweep"] == b["sweep"] and a["pruned"] == b["pruned"]
    a, b = both("revive", d / "m", "--data", "DATA", "--eval-data", "DATA", "--threshold", "0.9", "--lr", "1e-2", "--steps", "4",
                "--batch-size", "4", "--seeds", "1")
    assert a["models"] == b["models"] and a["relearning"] == b["relearning"]
    a, b = both("compare", d / "m", d / "ft_twin", "--task", "DATA")
    assert a["behaviour"] == b["behaviour"] and a["verdicts"] == b["verdicts"]
