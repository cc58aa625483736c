"""User-supplied text data for third-party causal LMs (JSONL, one object per line).

Three record kinds, one per file:

- ``{"prompt": ..., "answer": ...}``: loss (and accuracy) on the answer tokens only; the
  answer is tokenized as the continuation of the prompt (prompt + answer, then split);
- ``{"prompt": ..., "choices": [...], "answer": INDEX}``: multiple choice, as the field's
  unlearning benchmarks (WMDP-, MMLU-, TOFU-style) are written. Each choice is scored as a
  continuation of the prompt, exactly as an answer is; training (finetune, revive) and
  pruning's saliency use the loss on the correct choice's tokens only;
- ``{"text": ...}``: language-model loss on every token (e.g. the paper's TinyStories
  fine-tunes, whose data cannot be downloaded here and so comes from the user).

Prompt/answer and multiple-choice records may carry a ``"group"`` (a string: the kind
of fact, e.g. the relation), kept for the analyses that compare like with like.

The tokenizer comes from the model's Hugging Face directory. A prompt/answer or
multiple-choice record longer than the model's context is refused, naming its line (cutting
it would score an answer without its prompt); text records are cut from the right.
Scoring a model on the records is wrapcli/textdata/textscore.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wrapcli.core.errors import WrapError
from wrapcli.models.build import context_length
from wrapcli.textdata.sources import digest, rows

IGNORE = -100  # the label Hugging Face's loss skips
MIN_PROBE_RECORDS = 8  # as probe --eval-size
# Any of these makes a directory's tokenizer loadable (fast, sentencepiece, or BPE files).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


KINDS = {"prompt": "prompt/answer", "choice": "multiple-choice", "text": "text"}


def read_jsonl(path) -> tuple[str, list[dict]]:
    """Records of a JSONL file and their kind (``prompt``, ``choice`` or ``text``); every
    problem names its line."""
    kind, records, _ = read_records(path)
    return kind, records


def read_records(path) -> tuple[str, list[dict], list[int]]:
    """``read_jsonl`` for a record file of any format (wrapcli/textdata/sources.py), and
    the line (row) number of each record."""
    records, kinds, lines = [], set(), []
    for n, rec in rows(path):
        if "choices" in rec:
            _check_choice(path, n, rec)
            kind, fields = "choice", ("prompt",)
        elif {"prompt", "answer"} <= rec.keys():
            kind, fields = "prompt", ("prompt", "answer")
        elif "text" in rec:
            kind, fields = "text", ("text",)
        else:
            raise WrapError(f"{path}:{n}: needs 'prompt' and 'answer', or 'text'")
        for key in fields:
            if not isinstance(rec[key], str) or not rec[key]:
                raise WrapError(f"{path}:{n}: {key!r} must be a non-empty string")
        if "group" in rec and not isinstance(rec["group"], str):
            raise WrapError(f"{path}:{n}: 'group' must be a string")
        kinds.add(kind)
        records.append(rec)
        lines.append(n)
    if not records:
        raise WrapError(f"{path}: no records")
    if len(kinds) > 1:
        raise WrapError(f"{path}: mixes {' and '.join(KINDS[k] for k in sorted(kinds))} records; use one kind per file")
    return kinds.pop(), records, lines


def _check_choice(path, n: int, rec: dict) -> None:
    choices, answer = rec.get("choices"), rec.get("answer")
    if not isinstance(rec.get("prompt"), str) or not rec["prompt"]:
        raise WrapError(f"{path}:{n}: a multiple-choice record needs 'prompt', a non-empty string")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise WrapError(f"{path}:{n}: 'choices' must be a list of at least two non-empty strings")
    if len(set(choices)) < len(choices):
        raise WrapError(f"{path}:{n}: 'choices' repeats a choice")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise WrapError(f"{path}:{n}: 'answer' must be the index of the correct choice (0 to {len(choices) - 1}), "
                        f"got {answer!r}")
    lengths = rec.get("choice_lengths")
    if lengths is not None and (not isinstance(lengths, list) or len(lengths) != len(choices)
                                or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in lengths)):
        raise WrapError(f"{path}:{n}: 'choice_lengths' must be a positive integer per choice")


def read_labelled(path) -> tuple[list[str], list[str], list[str] | None]:
    """``{"text": ..., "label": ..., "group": ...}`` records (for probes): texts, labels as
    strings, and groups (None when no record has one). Labels must be of one JSON type
    (1 and "1" and true are not three classes); ``group`` (optional, on every record or
    none) keeps related records on one side of the probe's held-out split."""
    texts, labels, groups, lines, types = [], [], [], [], set()
    for n, rec in rows(path):
        if not isinstance(rec.get("text"), str) or "label" not in rec:
            raise WrapError(f"{path}:{n}: needs 'text' (a string) and 'label'")
        label = rec["label"]
        if not isinstance(label, (str, int, bool)):
            raise WrapError(f"{path}:{n}: 'label' must be a string, an integer or a boolean, got {label!r}")
        types.add(type(label).__name__)
        if len(types) > 1:
            raise WrapError(f"{path}:{n}: labels mix types ({' and '.join(sorted(types))}); use one type")
        texts.append(rec["text"])
        labels.append(str(label))
        groups.append(rec.get("group"))
        lines.append(n)
    has = [g is not None for g in groups]
    if any(has) and not all(has):
        raise WrapError(f"{path}:{lines[has.index(not has[0])]}: 'group' must be on every record or on none")
    if len(set(labels)) < 2:
        raise WrapError(f"{path}: labels must take at least two values (found {sorted(set(labels))})")
    if len(texts) < MIN_PROBE_RECORDS:
        raise WrapError(f"{path}: {len(texts)} records; a probe needs at least {MIN_PROBE_RECORDS} "
                        "(three quarters to fit, a quarter held out)")
    rare = min(set(labels), key=labels.count)
    if labels.count(rare) < 2:
        raise WrapError(f"{path}: label {rare!r} has 1 record; every label needs at least 2 (one on each side "
                        "of the held-out split)")
    return texts, labels, ([str(g) for g in groups] if all(has) and has else None)


def _encodes_nothing(tok) -> bool:
    try:
        return not tok("a probe of the tokenizer", add_special_tokens=False)["input_ids"]
    except Exception:  # a broken tokenizer is reported where it is used, naming the record
        return False


def load_tokenizer(model_dir):
    from transformers import AutoTokenizer

    path = Path(model_dir)
    if not path.is_dir():
        raise WrapError(
            f"{path}: user data needs the model's tokenizer; give a Hugging Face model "
            "directory (with tokenizer files), not a single .safetensors file"
        )
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise WrapError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); user data needs the "
                        "model's own tokenizer beside its weights")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if (path / "tokenizer.json").is_file() and _encodes_nothing(tok):
            # transformers 5 may pick the model type's own tokenizer class (a Qwen2 model:
            # Qwen2Tokenizer), which ignores a tokenizer.json of another kind and encodes
            # everything to nothing; the file itself is the tokenizer
            from transformers import PreTrainedTokenizerFast

            tok = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    except Exception as e:
        raise WrapError(f"{path}: no usable tokenizer in the directory ({str(e).splitlines()[0][:160]})") from None
    try:
        vocab_size = int(json.loads((path / "config.json").read_text()).get("vocab_size") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        vocab_size = 0
    if vocab_size and len(tok) > vocab_size:
        raise WrapError(f"{path}: the tokenizer has {len(tok):,} tokens but the model embeds {vocab_size:,}; "
                        "they do not belong together")
    return tok


class TooLong(WrapError):
    """A record that does not fit the model's context (``encode`` names its line)."""


def continuation(tokenizer, prompt: str, answer: str, max_len: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of ``prompt + answer`` with labels IGNORE outside the answer's
    tokens, split as lm-evaluation-harness splits a (context, continuation) pair: the
    prompt's trailing whitespace moves to the answer, the whole text is tokenized, and
    the answer is what follows the prompt's own tokens."""
    context = prompt.rstrip()
    prompt_ids = tokenizer(context, add_special_tokens=True)["input_ids"]
    full = tokenizer(prompt + answer, add_special_tokens=True)["input_ids"]
    if len(full) > max_len:
        raise TooLong(f"{len(full)} tokens, more than the model's context of {max_len}")
    n_prompt = len(prompt_ids)
    labels = [IGNORE] * n_prompt + full[n_prompt:]
    return full, labels


@dataclass(frozen=True)
class ChoiceSet:
    """One multiple-choice record: the examples (rows of ``TextData.examples``) holding
    its choices, in order, the correct one's index, and each choice's length in
    characters (lm-evaluation-harness's acc_norm divides by it)."""

    rows: tuple[int, ...]
    answer: int
    chars: tuple[int, ...]


def encode(kind: str, records: list[dict], tokenizer, max_len: int, where=None) -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` per record (per choice of a multiple-choice record, in
    order); labels are IGNORE outside the scored tokens. ``where(i)`` names record i in
    an error (its file and line)."""
    out = []
    for i, rec in enumerate(records):
        name = where(i) if where else f"record {i + 1}"
        try:
            if kind == "prompt":
                pairs = [continuation(tokenizer, rec["prompt"], rec["answer"], max_len)]
            elif kind == "choice":
                pairs = [continuation(tokenizer, rec["prompt"], c, max_len) for c in rec["choices"]]
        except TooLong as e:
            raise WrapError(f"{name}: {e}; shorten it or leave it out") from None
        if kind == "text":
            ids = tokenizer(rec["text"], add_special_tokens=True)["input_ids"][:max_len]
            pairs = [(ids, list(ids))]
        for ids, labels in pairs:
            if all(l == IGNORE for l in labels[1:]):
                raise WrapError(f"{name}: no tokens to score after tokenization (empty answer?)")
        out.extend(pairs)
    return out


def choice_sets(records: list[dict]) -> list[ChoiceSet]:
    """Where each multiple-choice record's choices sit among ``encode``'s examples."""
    out, row = [], 0
    for rec in records:
        k = len(rec["choices"])
        chars = rec.get("choice_lengths") or [len(c) for c in rec["choices"]]
        out.append(ChoiceSet(tuple(range(row, row + k)), rec["answer"], tuple(chars)))
        row += k
    return out


@dataclass
class TextData:
    """Batches of user records for the training loop (wrapcli/training/batches.py's protocol):
    each epoch visits every record once in a seeded order, so step ``s`` always gets
    the same batch and a resumed run sees what an uninterrupted one would."""

    examples: list[tuple[list[int], list[int]]]
    pad_id: int
    seed: int
    identity: str
    # multiple choice: one ChoiceSet per record; training visits the correct choices only
    choices: list[ChoiceSet] | None = None
    groups: list[str | None] | None = None  # each record's "group", if any
    records: list[dict] | None = None  # the records as read (prompts for held-out checks, samples)

    @property
    def kind(self) -> str:
        return self.identity.split(":", 1)[0]

    @property
    def train_rows(self) -> list[int]:
        """The examples training and pruning's saliency use: every one, or the correct
        choice of each multiple-choice record."""
        if self.choices is None:
            return list(range(len(self.examples)))
        return [c.rows[c.answer] for c in self.choices]

    @property
    def n_records(self) -> int:
        return len(self.choices) if self.choices is not None else len(self.examples)

    def indices(self, step: int, batch_size: int) -> list[int]:
        rows = self.train_rows
        n = len(rows)
        out = []
        for pos in range(step * batch_size, (step + 1) * batch_size):
            order = np.random.default_rng([self.seed, pos // n]).permutation(n)
            out.append(rows[int(order[pos % n])])
        return out

    def collate(self, idx: list[int], device) -> dict:
        import torch

        ids, mask = right_pad([self.examples[i][0] for i in idx], self.pad_id)
        labels, _ = right_pad([self.examples[i][1] for i in idx], IGNORE)
        return {k: torch.from_numpy(v).to(device) for k, v in (("input_ids", ids), ("attention_mask", mask), ("labels", labels))}

    def batch(self, step: int, cfg, device) -> dict:
        return self.collate(self.indices(step, cfg.batch_size), device)

    def loss(self, model, batch: dict, cfg):
        """Mean cross-entropy over the scored tokens (Hugging Face's loss, computed from the
        logits of the scored positions only)."""
        import torch

        logits, target, _, _ = answer_logits(model, batch)
        return torch.nn.functional.cross_entropy(logits.float(), target)


def answer_logits(model, batch: dict):
    """Logits (N, vocab) at the N positions that predict a scored token, their targets (N,),
    the row each comes from (N,) and its place in that row's scored span, 0-based (N,).

    The vocabulary projection runs on those positions only: for a 49K-token vocabulary,
    full (B, T, vocab) logits would dominate memory. Models that rescale their logits
    (soft-capping, a logit scale) take the full forward instead, and so does a model
    wrapped for data-parallel training (its gradients are averaged by hooks on its own
    forward, which the shortcut would bypass), and a fully sharded one (its forward gathers
    the weights)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    labels = batch["labels"]
    target_mask = labels[:, 1:] != IGNORE  # (B, T - 1): position t predicts token t + 1
    rows, cols = target_mask.nonzero(as_tuple=True)
    from wrapcli.core.distributed import is_sharded

    # a sharded model gathers its root's weights (embeddings, head) in its own forward only
    parallel = isinstance(model, DistributedDataParallel) or is_sharded(model)
    cfg = model.module.config if isinstance(model, DistributedDataParallel) else model.config
    if parallel or any(getattr(cfg, k, None) not in (None, 1.0) for k in ("final_logit_softcapping", "logit_scale")):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[rows, cols]
    else:
        hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = model.get_output_embeddings()(hidden[rows, cols])
    first = torch.zeros_like(rows)
    starts = torch.cumsum(target_mask.long(), 1) - 1  # (B, T - 1): index within the row's scored span
    place = starts[rows, cols] if len(rows) else first
    return logits, labels[:, 1:][rows, cols], rows, place


def right_pad(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Token rows of different lengths as (B, T) int64 ids padded on the right with
    ``pad``, and the (B, T) attention mask (1 on real tokens)."""
    width = max(map(len, rows))
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return ids, mask


def pad_id(tok) -> int:
    """The tokenizer's padding id, else its end-of-sequence id, else 0 (masked either way)."""
    return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)


def text_data(path, model_dir, model, seed: int, tokenizer=None, kinds=None, rewrite=None) -> TextData:
    """The records of ``path`` tokenized by ``model_dir``'s tokenizer (or ``tokenizer``);
    ``kinds`` lists the record kinds the caller can use (a usage error names the rest);
    ``rewrite`` (records -> records of the same kind, e.g. with in-context examples
    before each prompt) is applied before tokenizing."""
    from wrapcli.core.errors import UsageError

    kind, records, lines = read_records(path)
    if rewrite is not None:
        records = rewrite(records)
    if kinds is not None and kind not in kinds:
        raise UsageError(f"{path}: {KINDS[kind]} records; this needs {' or '.join(KINDS[k] for k in kinds)} records")
    tok = tokenizer if tokenizer is not None else load_tokenizer(model_dir)
    max_len = context_length(model.config) or 1024
    groups = [rec.get("group") for rec in records] if any("group" in rec for rec in records) else None
    examples = encode(kind, records, tok, max_len, where=lambda i: f"{path}:{lines[i]}")
    return TextData(examples, pad_id(tok), seed, f"{kind}:{digest(path)}",
                    choices=choice_sets(records) if kind == "choice" else None, groups=groups, records=records)


