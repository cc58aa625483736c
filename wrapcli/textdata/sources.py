"""Where records come from: the field's files as they are shipped, read into wrapcli's record
kinds (wrapcli/textdata/userdata.py).

- **Formats** (by name): ``.jsonl`` (one object per line), ``.json`` (a list of objects, or
  an object holding the list under the ``--split`` name or its only list), ``.csv`` (a
  header row; a cell holding a JSON list, e.g. ``["a", "b"]``, is read as a list),
  ``.parquet`` and ``.arrow`` (through pyarrow: the ``data`` extra), and a directory that
  Hugging Face ``datasets`` wrote with ``save_to_disk`` (one split, or a ``DatasetDict``
  whose split ``--split`` picks) or that holds a hub-style copy (``SPLIT-*.parquet`` files,
  also under ``data/``).
- **A field map** (``--fields prompt=question,choices=choices,answer=answer``) names the
  columns that hold each record key: ``prompt``, ``answer``, ``choices``, ``text``,
  ``label``, ``group``, ``subject``. ``choices=A+B+C+D`` gathers several columns into the
  list (MMLU's CSV layout). A multiple-choice answer may be the choice's index, its letter
  (``"C"``) or its text; it is converted to the index, and one that matches no choice is
  refused naming the row.
- **A template** for multiple choice: ``raw`` keeps the prompt and appends each choice as it
  is written (as wrapcli always has); ``cloze`` appends each after lm-eval's default target
  delimiter, a space (acc_norm divides by the choice's own length, as lm-eval does), for
  choices shipped without one; ``letters`` renders them as lm-evaluation-harness's MMLU and
  WMDP tasks do::

      The following are multiple choice questions (with answers) about SUBJECT.\\n\\n   (with a subject)
      QUESTION.strip()\\nA. CHOICE0\\nB. CHOICE1\\n...\\nAnswer:

  with the continuations ``" A"``, ``" B"``, ... (acc_norm divides by the letter's length,
  1, as lm-eval does). A subject's underscores become spaces.

The command sets the field map, split and template for every record file it reads
(``reading``); each row is then checked as a JSONL line is, with errors naming the file
and the row (1-based).
"""

from __future__ import annotations

import contextlib
import json
import string
from dataclasses import dataclass, field
from pathlib import Path

from wrapcli.core.errors import UsageError, WrapError

KEYS = ("prompt", "answer", "choices", "text", "label", "group", "subject")
TEMPLATES = ("raw", "cloze", "letters")
DATA_EXTRA = "data"


@dataclass(frozen=True)
class View:
    """How the current command reads record files: the field map, the split and the
    multiple-choice template."""

    fields: dict = field(default_factory=dict)
    split: str | None = None
    template: str = "raw"
    include_path: str | None = None  # lm-eval's local task YAMLs (--include-path)

    @property
    def plain(self) -> bool:
        """Whether a JSONL file is read exactly as written (no map, no template); a table's
        rows are always shaped (a letter as the answer is converted without --fields too)."""
        return not self.fields and self.template == "raw"


_view = View()


def parse_fields(text: str | None) -> dict[str, list[str]]:
    """``--fields prompt=question,choices=A+B+C+D,...`` as ``{key: [columns]}``."""
    if not text:
        return {}
    out: dict[str, list[str]] = {}
    for part in text.split(","):
        key, eq, columns = part.partition("=")
        key, cols = key.strip(), [c.strip() for c in columns.split("+")]
        if not eq or not all(cols):
            raise UsageError(f"--fields {text}: {part.strip()!r} is not KEY=COLUMN")
        if key not in KEYS:
            raise UsageError(f"--fields: unknown record key {key!r} (known: {', '.join(KEYS)})")
        if key in out:
            raise UsageError(f"--fields: {key} is mapped twice")
        if len(cols) > 1 and key != "choices":
            raise UsageError(f"--fields: only choices gathers several columns (A+B+...), not {key}")
        out[key] = cols
    return out


@contextlib.contextmanager
def reading(fields: str | None = None, split: str | None = None, template: str = "raw", include_path: str | None = None):
    """The field map, split and template of one command's record files, for the time the
    command runs (restored afterwards, so commands run in one process do not share them)."""
    global _view
    if template not in TEMPLATES:
        raise UsageError(f"--template: unknown template {template!r} (known: {', '.join(TEMPLATES)})")
    if include_path is not None and not Path(include_path).is_dir():
        raise UsageError(f"--include-path {include_path}: not a directory of task YAMLs")
    before, _view = _view, View(parse_fields(fields), split, template, include_path)
    try:
        yield _view
    finally:
        _view = before


def json_lines(path):
    """``(line number, object)`` for every non-blank line of a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise WrapError(f"{path}: no such file")
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise WrapError(f"{path}:{n}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise WrapError(f"{path}:{n}: not valid JSON ({e})") from None
            except RecursionError:
                raise WrapError(f"{path}:{n}: nested too deeply to be a record") from None
            if not isinstance(rec, dict):
                raise WrapError(f"{path}:{n}: expected a JSON object")
            try:
                json.dumps(rec, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise WrapError(f"{path}:{n}: holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
            yield n, rec


TABLES = (".json", ".csv", ".parquet", ".arrow")
LM_EVAL = "lm-eval:"  # eval --lm-eval-task NAME reads the records of "lm-eval:NAME"


def describe(path) -> dict:
    """How a record source was read, for the report: the field map, split, template and
    lm-eval include path in force, and the source's sha256."""
    return {"fields": {k: "+".join(v) for k, v in _view.fields.items()}, "split": _view.split,
            "template": _view.template, "include_path": _view.include_path, "sha256": digest(path)}


def digest(path) -> str:
    """The sha256 that names a record source: the file's (or directory's), or for an
    lm-eval task that of its records as JSON."""
    from wrapcli.core.files import sha256

    if not str(path).startswith(LM_EVAL):
        return sha256(path)
    import hashlib

    text = json.dumps([rec for _, rec in rows(path)], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def is_record_file(name: str) -> bool:
    """Whether a --task value names records (a file of a known format, or a dataset
    directory) rather than a built-in task such as count:a."""
    return Path(name).suffix.lower() in (".jsonl", *TABLES) or Path(name).is_dir()


def rows(path) -> list[tuple[int, dict]]:
    """``[(N, record)]`` of a record file in any format, mapped and templated by the
    current view; N is the line of a JSONL file (any suffix not in TABLES is read as
    JSONL, as wrapcli always has) or the 1-based row of a table."""
    if str(path).startswith(LM_EVAL):  # built by lm-eval itself, never mapped or templated
        from wrapcli.textdata.lmeval import task_records

        return list(enumerate(task_records(str(path)[len(LM_EVAL):], _view.include_path), 1))
    path = Path(path)
    if path.is_file() and path.suffix.lower() not in TABLES:
        raw = list(json_lines(path))
        if _view.plain:  # a JSONL file without a map or template is read exactly as written
            return raw
    else:
        raw = list(enumerate(read_table(path), 1))
    return [(n, shaped(path, n, rec)) for n, rec in raw]


def read_table(path: Path) -> list[dict]:
    """Every row of a non-JSONL record file (or dataset directory) as a dict."""
    if not path.exists():
        raise WrapError(f"{path}: no such file or directory")
    if path.is_dir():
        return _read_dataset_dir(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path)
    return _read_arrow_table(path, suffix[1:])


def _read_json(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise WrapError(f"{path}: not valid JSON ({str(e)[:80]}); one object per line is .jsonl") from None
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if _view.split is not None:
            if _view.split not in lists:
                raise WrapError(f"{path}: no list under --split {_view.split!r} (lists: {', '.join(lists) or 'none'})")
            data = lists[_view.split]
        elif len(lists) == 1:
            data = next(iter(lists.values()))
        else:
            raise WrapError(f"{path}: a JSON object with {len(lists)} lists ({', '.join(lists)}); pick one with --split")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise WrapError(f"{path}: expected a JSON list of objects")
    return data


def _read_csv(path: Path) -> list[dict]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise WrapError(f"{path}: not a readable UTF-8 CSV file ({str(e)[:80]})") from None
    for rec in records:
        for key, value in rec.items():
            if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
                with contextlib.suppress(ValueError):
                    rec[key] = json.loads(value)
    return records


def require_pyarrow():
    try:
        import pyarrow
    except ImportError:
        raise WrapError(f"parquet and arrow files need pyarrow, the '{DATA_EXTRA}' extra: "
                        f"pip install 'wrapcli[{DATA_EXTRA}]'") from None
    return pyarrow


def _read_arrow_table(path: Path, kind: str) -> list[dict]:
    pa = require_pyarrow()
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(str(path))
        else:
            import pyarrow.ipc as ipc

            with pa.memory_map(str(path)) as source:
                try:
                    table = ipc.open_file(source).read_all()
                except pa.ArrowInvalid:  # datasets writes the streaming format
                    source.seek(0)
                    table = ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError) as e:
        raise WrapError(f"{path}: not a readable {kind} file ({str(e).splitlines()[0][:120]})") from None
    return table.to_pylist()


def _read_dataset_dict(path: Path) -> Path:
    """The split folder of a ``DatasetDict.save_to_disk`` directory."""
    splits = json.loads((path / "dataset_dict.json").read_text()).get("splits") or []
    if _view.split is None and len(splits) != 1:
        raise WrapError(f"{path}: a dataset with splits {', '.join(splits)}; pick one with --split")
    split = _view.split or splits[0]
    if split not in splits:
        raise WrapError(f"{path}: no split {split!r} (splits: {', '.join(splits)})")
    return path / split


def _read_dataset_dir(path: Path) -> list[dict]:
    if (path / "dataset_dict.json").is_file():
        path = _read_dataset_dict(path)
    if (path / "state.json").is_file():  # one split written by save_to_disk
        files = [path / f["filename"] for f in json.loads((path / "state.json").read_text()).get("_data_files", [])]
        return [row for f in files for row in _read_arrow_table(f, "arrow")]
    found = sorted(p for p in [*path.glob("*"), *path.glob("data/*")] if p.suffix in (".parquet", ".arrow", ".jsonl"))
    splits = sorted({p.name.split("-")[0].split(".")[0] for p in found})
    if not found:
        raise WrapError(f"{path}: a directory without records (no save_to_disk files, no *.parquet, *.arrow or "
                        "*.jsonl)")
    if _view.split is None and len(splits) > 1:
        raise WrapError(f"{path}: files of splits {', '.join(splits)}; pick one with --split")
    split = _view.split or splits[0]
    picked = [p for p in found if p.name.split("-")[0].split(".")[0] == split]
    if not picked:
        raise WrapError(f"{path}: no files of split {split!r} (splits: {', '.join(splits)})")
    out = []
    for p in picked:
        if p.suffix == ".jsonl":
            out += [rec for _, rec in json_lines(p)]
        else:
            out += _read_arrow_table(p, p.suffix[1:])
    return out


def shaped(path, n: int, row: dict) -> dict:
    """One row as a wrapcli record: the field map applied, a multiple-choice answer made
    an index, and the template rendered."""
    rec = dict(row)
    fields = _view.fields
    if fields:
        missing = sorted({c for cols in fields.values() for c in cols} - row.keys())
        if missing:
            raise WrapError(f"{path}:{n}: no column {missing[0]!r} (columns: {', '.join(map(str, row))})")
        for key, cols in fields.items():
            rec[key] = [row[c] for c in cols] if len(cols) > 1 else row[cols[0]]
    if "choices" in rec and isinstance(rec.get("choices"), (list, tuple)):
        rec["choices"] = list(rec["choices"])
        rec["answer"] = answer_index(path, n, rec)
        if _view.template == "letters":
            rec = letters(path, n, rec)
        elif _view.template == "cloze":
            rec = {**rec, "choices": [f" {c}" for c in rec["choices"]],
                   "choice_lengths": [max(len(str(c)), 1) for c in rec["choices"]]}
    return rec


def answer_index(path, n: int, rec: dict) -> int:
    """A multiple-choice answer as the choice's index: an index, a letter or the choice's
    text (text first: a choice may itself be a letter)."""
    answer, choices = rec.get("answer"), rec["choices"]
    if isinstance(answer, bool):
        raise WrapError(f"{path}:{n}: 'answer' must be an index, a letter or a choice's text, got {answer!r}")
    if isinstance(answer, int):
        return answer
    if isinstance(answer, str):
        text = [str(c) for c in choices]
        if answer in text:
            return text.index(answer)
        letter = answer.strip().upper()
        if len(letter) == 1 and letter in string.ascii_uppercase[: len(choices)]:
            return string.ascii_uppercase.index(letter)
        if answer.strip().isdigit() and int(answer) < len(choices):
            return int(answer)
    raise WrapError(f"{path}:{n}: answer {answer!r} matches no choice (give its index 0 to {len(choices) - 1}, its "
                    f"letter A to {string.ascii_uppercase[min(len(choices), 26) - 1]} or its text)")


def letters(path, n: int, rec: dict) -> dict:
    """lm-eval's MMLU/WMDP rendering of a multiple-choice record (module docstring)."""
    choices = rec["choices"]
    if len(choices) > 26:
        raise WrapError(f"{path}:{n}: {len(choices)} choices; --template letters labels at most 26 (A to Z)")
    if not isinstance(rec.get("prompt"), str):
        raise WrapError(f"{path}:{n}: a multiple-choice record needs 'prompt', a non-empty string")
    subject = rec.get("subject")
    head = (f"The following are multiple choice questions (with answers) about {str(subject).replace('_', ' ')}.\n\n"
            if subject else "")
    body = "".join(f"\n{string.ascii_uppercase[i]}. {c}" for i, c in enumerate(choices))
    marks = list(string.ascii_uppercase[: len(choices)])
    return {**rec, "prompt": f"{head}{rec['prompt'].strip()}{body}\nAnswer:", "choices": [f" {m}" for m in marks],
            "choice_lengths": [len(m) for m in marks]}
