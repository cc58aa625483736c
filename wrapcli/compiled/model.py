"""Compiled models (docs/protocol.md "Compiled models"; Jain et al. 2024, Sec. 4 and App. C):
transformers whose weights Tracr wrote from a RASP program, so their mechanism is known
exactly. This module needs no JAX: it holds the architecture in torch, the checkpoint
format and the programs' tasks. Making one from a program is wrapcli/compiled/compiling.py
(the ``compile`` extra).

The architecture is Tracr's (tracr/transformer/model.py): the residual stream starts as
a token embedding plus a position embedding, then every layer adds non-causal multi-head
attention (softmax(QK^T / sqrt(key_size)), padding masked) and then a 2-layer ReLU MLP;
no normalisation anywhere. The output is read from the residual stream by a fixed
projection onto the output variable's one-hot dimensions (``unembed``), which is rebuilt
from the residual labels and the output encoder when the model is compiled.

Shapes: B batch, T positions (BOS first), d_model the residual width, H heads,
d_head the key (= value) size per head, d_mlp the MLP width, n_out the output values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wrapcli.core.errors import UsageError, WrapError

PROGRAMS = ("counter", "max-id")  # the paper's two compiled models


@dataclass(frozen=True)
class CompiledSpec:
    """Everything about a compiled model that is not a weight (stored as JSON metadata)."""

    program: str  # counter | max-id
    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_model: int
    max_len: int  # input tokens after BOS
    causal: bool
    input_vocab: list  # token per input id (BOS, values..., pad)
    bos: str
    pad: str
    output_name: str  # the RASP output variable
    output_values: list  # output value per output index (the output encoder's order)
    residual_labels: list  # one label per residual dimension, e.g. "tokens:a", "count_a:3"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path) -> "CompiledSpec":
        try:
            spec = cls(**json.loads(text))
        except (ValueError, TypeError) as e:
            raise WrapError(f"{path}: unreadable compiled-model metadata ({e})") from None
        if spec.program not in PROGRAMS:
            raise WrapError(f"{path}: unknown compiled program {spec.program!r} (known: {', '.join(PROGRAMS)})")
        if len(spec.residual_labels) != spec.d_model:
            raise WrapError(f"{path}: {len(spec.residual_labels)} residual labels for width {spec.d_model}")
        return spec

    def unembedding(self) -> np.ndarray:
        """(n_out, d_model) projection onto the output variable's dimensions, in the output
        encoder's order: row i is 1 at the residual label ``{output_name}:{value_i}``."""
        index = {label: i for i, label in enumerate(self.residual_labels)}
        out = np.zeros((len(self.output_values), self.d_model), dtype=np.float32)
        for i, value in enumerate(self.output_values):
            label = f"{self.output_name}:{value}"
            if label not in index:
                raise WrapError(f"the residual stream has no dimension {label!r} for output value {value!r}")
            out[i, index[label]] = 1.0
        return out


def build(spec: CompiledSpec):
    """The torch module for ``spec``, weights zero (load them with ``load_state_dict``)."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            inner = spec.n_heads * spec.d_head
            self.query, self.key, self.value = (nn.Linear(spec.d_model, inner) for _ in range(3))
            self.linear = nn.Linear(inner, spec.d_model)

        def forward(self, x, mask, weights=None):  # x (B, T, d_model), mask (B, 1, T, T) True = attend
            B, T, _ = x.shape
            q, k, v = (p(x).view(B, T, spec.n_heads, spec.d_head).transpose(1, 2)
                       for p in (self.query, self.key, self.value))  # (B, H, T, d_head)
            logits = q @ k.transpose(-1, -2) / np.sqrt(spec.d_head)  # (B, H, T, T)
            logits = logits.masked_fill(~mask, -1e30)
            attn = torch.softmax(logits, dim=-1)
            if weights is not None:
                weights.append(attn)
            out = attn @ v  # (B, H, T, d_head)
            return self.linear(out.transpose(1, 2).reshape(B, T, -1))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear_1 = nn.Linear(spec.d_model, spec.d_mlp)
            self.linear_2 = nn.Linear(spec.d_mlp, spec.d_model)

        def forward(self, x):
            return self.linear_2(torch.relu(self.linear_1(x)))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.mlp = Attention(), MLP()

    class CompiledTransformer(nn.Module):
        """Tracr's architecture; ``forward`` returns output logits (B, T, n_out) and, with
        ``residuals=True``, the residual stream after every attention and MLP block; with
        ``attentions`` a list, each layer's attention weights (B, H, T, T) are appended to it."""

        def __init__(self):
            super().__init__()
            self.spec = spec
            self.token_embed = nn.Embedding(len(spec.input_vocab), spec.d_model)
            self.pos_embed = nn.Embedding(spec.max_len + 1, spec.d_model)
            self.layers = nn.ModuleList(Layer() for _ in range(spec.n_layers))
            self.register_buffer("unembed", torch.from_numpy(spec.unembedding()))

        def forward(self, input_ids, residuals: bool = False, attentions: list | None = None):
            B, T = input_ids.shape
            x = self.token_embed(input_ids) + self.pos_embed(torch.arange(T, device=input_ids.device))
            keys = (input_ids != spec.input_vocab.index(spec.pad))[:, None, None, :]  # (B, 1, 1, T)
            mask = keys.expand(B, 1, T, T)
            if spec.causal:
                mask = mask & torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            stream = []
            for layer in self.layers:
                x = x + layer.attn(x, mask, attentions)
                stream.append(x)
                x = x + layer.mlp(x)
                stream.append(x)
            logits = x @ self.unembed.T  # (B, T, n_out)
            return (logits, stream) if residuals else logits

    return CompiledTransformer()


# -- the checkpoint format ------------------------------------------------------------
def load_checkpoint(path):
    """The torch model of a compiled (Tracr) checkpoint file, checked like any other."""
    from wrapcli.models.checkpoint import read_metadata
    from wrapcli.models.integrity import check_finite

    path = Path(path)
    meta = read_metadata(path)
    if "compiled" not in meta:
        raise WrapError(f"{path}: not a compiled (Tracr) checkpoint")
    model = load(path, meta)
    check_finite(model, path)
    return model


def load(path: Path, meta: dict):
    """The torch model of a compiled checkpoint; shapes checked against its spec."""
    import torch
    from safetensors.torch import load_file

    spec = CompiledSpec.from_json(meta["compiled"], path)
    model = build(spec)
    tensors = load_file(str(path))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name in sorted(set(expected) | set(tensors)):
        got = tuple(tensors[name].shape) if name in tensors else None
        if got != expected.get(name):
            raise WrapError(f"{path}: tensor {name} is {got or 'missing'}, the compiled spec implies "
                            f"{expected.get(name, 'no such tensor')}")
    if not torch.equal(tensors["unembed"], model.unembed):
        raise WrapError(f"{path}: the unembedding does not match the residual labels and output values")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.eval()


# -- the programs' tasks --------------------------------------------------------------
def sample_inputs(spec: CompiledSpec, n: int, seed: int) -> list[list]:
    """``n`` random inputs of ``max_len`` values from the compiled vocabulary (BOS and pad
    excluded); max-id draws distinct values, as its program assumes."""
    rng = np.random.default_rng(seed)
    values = [v for v in spec.input_vocab if v not in (spec.bos, spec.pad)]
    if spec.program == "max-id":
        return [list(rng.choice(np.array(values, dtype=object), spec.max_len, replace=False)) for _ in range(n)]
    return [list(rng.choice(np.array(values, dtype=object), spec.max_len)) for _ in range(n)]


def target(spec: CompiledSpec, inputs: list) -> object:
    """What the program computes, by brute force: the count of ``a`` (counter) or the 5th
    largest value (max-id)."""
    if spec.program == "counter":
        return sum(1 for v in inputs if v == "a")
    return sorted(inputs, reverse=True)[4]


def encode(spec: CompiledSpec, inputs: list[list]) -> np.ndarray:
    """(B, 1 + max_len) input ids, BOS first."""
    ids = {v: i for i, v in enumerate(spec.input_vocab)}
    return np.array([[ids[spec.bos]] + [ids[v] for v in row] for row in inputs], dtype=np.int64)


SETTINGS = ("natural", "C_Te=0", "C_Te=1")  # as the built-in tasks: without / with the spurious feature


def counter_inputs(spec: CompiledSpec, n: int, rng, spurious: float | None, offset: int = 1) -> list[list]:
    """``n`` counter inputs over the compiled letters (``counter_ids`` as letters)."""
    letters = np.array(spec.input_vocab, dtype=object)
    return [list(row) for row in letters[counter_ids(spec, n, rng, spurious, offset)[:, 1:]]]


def counter_ids(spec: CompiledSpec, n: int, rng, spurious: float | None, offset: int = 1) -> np.ndarray:
    """(n, 1 + max_len) input ids of counter inputs, BOS first. ``spurious=None``: uniform
    letters. Otherwise exactly round(spurious * n) rows have the spurious feature
    count(b) = count(a) + ``offset`` and the others do not, in a shuffled order; each
    kind is uniform over the inputs of that kind (rejection sampling, vectorised, so a
    fine-tuning batch costs well under a millisecond)."""
    letters = np.array([i for i, v in enumerate(spec.input_vocab) if v not in (spec.bos, spec.pad)])
    draw = lambda m: letters[rng.integers(0, len(letters), size=(m, spec.max_len))]  # noqa: E731
    if spurious is None:
        rows = draw(n)
    else:
        if not {"a", "b", "c"} <= {spec.input_vocab[i] for i in letters}:
            raise UsageError("the spurious feature needs a counter over a, b and c")
        a, b = spec.input_vocab.index("a"), spec.input_vocab.index("b")
        if offset > spec.max_len or offset < -spec.max_len:
            raise UsageError(f"cannot make count(b) = count(a) + {offset} in inputs of {spec.max_len} letters")
        want = round(spurious * n)
        kept = {True: [], False: []}
        counts = {True: 0, False: 0}
        for _ in range(10_000):
            if counts[True] >= want and counts[False] >= n - want:
                break
            rows = draw(max(4 * n, 64))
            holds = (rows == b).sum(1) == (rows == a).sum(1) + offset
            for kind in (True, False):
                kept[kind].append(rows[holds == kind])
                counts[kind] += int((holds == kind).sum())
        else:
            raise UsageError(f"cannot draw inputs with count(b) = count(a) + {offset} in {spec.max_len} letters")
        rows = np.concatenate([np.concatenate(kept[True])[:want], np.concatenate(kept[False])[: n - want]])
        rows = rows[rng.permutation(n)]
    bos = np.full((n, 1), spec.input_vocab.index(spec.bos))
    return np.concatenate([bos, rows], axis=1).astype(np.int64)


def score(model, inputs: list[list], truth: list, device: str = "cpu") -> dict:
    """The answer read at the last position against ``truth``: accuracy with its Wilson
    interval, the majority (constant-answer) baseline and the accuracy per expected answer,
    in the shape of a built-in task's score (schema EVAL_SCORE)."""
    import torch

    from wrapcli.core.stats import wilson

    spec = model.spec
    with torch.inference_mode():
        logits = model.to(device)(torch.as_tensor(encode(spec, inputs), device=device))
    predicted = [str(spec.output_values[i]) for i in logits[:, -1].argmax(-1).tolist()]
    pairs = list(zip(predicted, [str(t) for t in truth]))

    def rate(pairs):
        hits = sum(p == t for p, t in pairs)
        lo, hi = wilson(hits, len(pairs))
        return {"accuracy": hits / len(pairs), "n": len(pairs), "ci95": [lo, hi]}

    answers = sorted({t for _, t in pairs}, key=lambda a: (len(a), a))
    per_answer = {a: rate([pt for pt in pairs if pt[1] == a]) for a in answers}
    majority = max(r["n"] for r in per_answer.values()) / len(pairs)
    return {**rate(pairs), "majority_baseline": majority, "per_answer": per_answer}


def evaluate(model, n: int, seed: int = 0, device: str = "cpu", operand: str | None = None,
             settings=("natural",)) -> dict:
    """``{task: {setting: score}}`` on ``n`` random inputs per setting: the program's own
    task (``compiled:PROGRAM``), or for a counter the count of ``operand`` (``count:X``),
    also with (C_Te=1) and without (C_Te=0) the spurious feature."""
    spec = model.spec
    if n < 1:
        raise UsageError(f"--eval-size must be >= 1, got {n}")
    if operand is None:
        inputs = sample_inputs(spec, n, seed)
        return {f"compiled:{spec.program}": {"natural": score(model, inputs, [target(spec, r) for r in inputs], device)}}
    if spec.program != "counter" or operand not in spec.input_vocab or operand in (spec.bos, spec.pad):
        raise UsageError(f"count:{operand} is not a task of this compiled {spec.program}")
    out = {}
    for setting in settings:
        rng = np.random.default_rng([seed, SETTINGS.index(setting)])
        inputs = counter_inputs(spec, n, rng, {"natural": None, "C_Te=0": 0.0, "C_Te=1": 1.0}[setting])
        out[setting] = score(model, inputs, [row.count(operand) for row in inputs], device)
    return {f"count:{operand}": out}
