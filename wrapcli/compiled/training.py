"""Fine-tuning, pruning and reading compiled (Tracr) models (docs/protocol.md "Compiled
models"): pure functions over a compiled torch model (wrapcli/compiled/model.py) and counter
inputs. Loading, checking, writing and the reports are wrapcli/runs/compiled.py.

The paper's recipe: SGD with momentum, batch 96, LRs 1e-1 / 1e-2 / 1e-3 / 1e-4, 10K
iterations, after N(0, 0.001) noise on the weights (``compile --noise``). The loss is the
cross-entropy of the answer read at the last position through the fixed one-hot readout
(the same answer loss as the built-in tasks). Tracr's weights are large (attention
query 100, MLP input 100), so one step's gradient can be far larger than the weights it
moves; every step's gradient norm is clipped to ``CLIP`` so that the larger LRs do not
turn the weights into NaN within a few steps (docs/compiled.md has the measurements).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wrapcli.compiled import model as compiled
from wrapcli.core.errors import UsageError

MOMENTUM = 0.9
CLIP = 1.0
LRS = {"small": 1e-4, "medium": 1e-3, "large": 1e-2}  # the paper's fourth, 1e-1, as a number


@dataclass(frozen=True)
class Recipe:
    """One compiled fine-tune (or reverse fine-tune): what the report's ``train`` holds."""

    steps: int = 10_000
    batch_size: int = 96
    lr: float = 1e-3
    eval_every: int = 1_000
    eval_size: int = 512

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "eval_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be > 0, got {self.lr}")

    def to_dict(self) -> dict:
        """In the shape of a built-in run's settings (schema TRAIN_CFG): constant LR, no
        weight decay, no warm-up; ``optimizer`` and ``momentum`` say it is SGD."""
        return {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "loss": "answer",
                "warmup_frac": 0.0, "min_lr_ratio": 1.0, "weight_decay": 0.0, "beta2": 0.0, "grad_clip": CLIP,
                "eval_every": self.eval_every, "eval_size": self.eval_size, "stream": 0, "mix": 0.0,
                "precision": "fp32", "optimizer": "sgd", "momentum": MOMENTUM}


def resolve_lr(value: str) -> tuple[float, str | None]:
    """(lr, name or None) from small / medium / large (this recipe's LRS) or a number."""
    from wrapcli.training.presets import resolve_lr as read_lr

    return read_lr(value, LRS)


def operand_of(spec, task: str) -> str:
    """The letter of ``count:X`` on a compiled counter, or a usage error."""
    if spec.program != "counter":
        raise UsageError(
            f"only a compiled counter can be fine-tuned, pruned, probed, revived or compared so far, not {spec.program}"
        )
    letters = [v for v in spec.input_vocab if v not in (spec.bos, spec.pad)]
    if not task.startswith("count:") or task.split(":", 1)[1] not in letters:
        raise UsageError(f"--task {task}: a compiled counter takes count:{', count:'.join(letters)}")
    return task.split(":", 1)[1]


def answer_loss(model, ids, operand: str):
    """Mean cross-entropy of the count of ``operand``, read at the last position."""
    import torch
    import torch.nn.functional as F

    spec = model.spec
    x = torch.as_tensor(ids)
    counts = (x[:, 1:] == spec.input_vocab.index(operand)).sum(1)
    index = torch.full((spec.max_len + 1,), -100, dtype=torch.long)  # a count with no output value: ignored
    for i, value in enumerate(spec.output_values):
        if isinstance(value, int) and 0 <= value <= spec.max_len:
            index[value] = i
    return F.cross_entropy(model(x)[:, -1], index[counts])


def train(
    model, operand: str, recipe: Recipe, seed: int, spurious: float | None, on_eval=None, eval_steps=(), on_step=None
) -> list[float]:
    """SGD with momentum on the count of ``operand`` (``spurious``: C_Tr, the share of
    batches' inputs with count(b) = count(a) + 1; None: uniform inputs). ``on_eval(step)``
    runs at step 0 and at every step in ``eval_steps``; ``on_step(step, loss)`` after
    each update. Returns the loss of every step."""
    import torch

    rng = np.random.default_rng([seed, 1])
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=MOMENTUM)
    wanted = set(eval_steps)
    losses = []
    model.train()
    if on_eval:
        on_eval(0)
    for step in range(1, recipe.steps + 1):
        loss = answer_loss(model, compiled.counter_ids(model.spec, recipe.batch_size, rng, spurious), operand)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        losses.append(float(loss.detach()))
        if on_step:
            on_step(step, losses[-1])
        if on_eval and step in wanted:
            on_eval(step)
    model.eval()
    return losses


# -- pruning: single weights (the paper's unit for compiled models) or MLP neurons --------
def saliency(model, operand: str, n: int, seed: int, unit: str = "weight") -> list[dict]:
    """Every unit with its weight x gradient score on the count of ``operand`` over ``n``
    natural inputs, highest first (first-order estimate of how much the loss drops when
    the unit is zeroed, as the built-in pruning scores its units). ``weight``: every
    weight (the fixed readout excluded); ``neuron``: each MLP hidden unit, scored over the
    weights that read from it (its column of the MLP's output matrix, as the built-in
    neurons), ``index`` its position in the layer."""
    import torch

    if unit not in ("weight", "neuron"):
        raise UsageError(f"a compiled model is pruned by weight or neuron, not {unit}")
    model.zero_grad(set_to_none=True)
    answer_loss(model, compiled.counter_ids(model.spec, n, np.random.default_rng([seed, 2]), None), operand).backward()
    names, scores = [], []
    for name, p in model.named_parameters():
        if unit == "weight":
            names.append(name)
            scores.append((p.detach() * p.grad).flatten())
        elif name.endswith("mlp.linear_2.weight"):  # (d_model, d_mlp): column j reads neuron j
            names.append(name)
            scores.append((p.detach() * p.grad).sum(0))
    model.zero_grad(set_to_none=True)
    flat = torch.cat(scores)
    sizes = np.cumsum([0] + [len(s) for s in scores])
    order = torch.argsort(flat, descending=True, stable=True)[:4096].tolist()
    out = []
    for i in order:
        t = int(np.searchsorted(sizes, i, side="right") - 1)
        out.append({"param": names[t], "unit": unit, "index": int(i - sizes[t]), "score": float(flat[i])})
    return out


def zero(model, units: list[dict], source: dict | None = None) -> None:
    """Set each unit to 0 (a weight, or every weight reading from a neuron), or with
    ``source`` (a base model's parameters by name) back to the base's values."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for u in units:
            w = params[u["param"]]
            base = None if source is None else source[u["param"]]
            if u.get("unit", "weight") == "neuron":
                w[:, u["index"]] = 0.0 if base is None else base[:, u["index"]]
            else:
                w.view(-1)[u["index"]] = 0.0 if base is None else base.reshape(-1)[u["index"]]


# -- attention at the answer position ---------------------------------------------------
def attention_at_answer(model, ids: np.ndarray) -> list[dict]:
    """For each layer and head: the mean share of attention from the last position (where
    the answer is read) onto BOS and onto the input tokens equal to each letter."""
    import torch

    spec = model.spec
    weights = []
    with torch.inference_mode():
        model(torch.as_tensor(ids), attentions=weights)
    out = []
    for layer, att in enumerate(weights):
        row = att[:, :, -1].numpy()  # (B, H, T)
        for head in range(row.shape[1]):
            shares = {
                str(tok): float((row[:, head] * (ids == i)).sum(1).mean())
                for i, tok in enumerate(spec.input_vocab)
                if tok != spec.pad
            }
            out.append({"layer": layer, "head": head, **shares})
    return out


# -- the residual stream at the answer position (probes) --------------------------------
def residual_features(model, ids: np.ndarray) -> list[np.ndarray]:
    """(n, d_model) residual stream at the last position after the embedding and after
    every block (its MLP), as the built-in models' ``hook_embed`` and
    ``blocks.{l}.hook_resid_post``."""
    import torch

    x = torch.as_tensor(ids)
    with torch.inference_mode():
        embedded = model.token_embed(x) + model.pos_embed(torch.arange(x.shape[1]))
        _, stream = model(x, residuals=True)
    return [embedded[:, -1].numpy()] + [s[:, -1].numpy() for s in stream[1::2]]
