"""Presets name whole protocols (docs/design.md decision 7); explicit flags override them.

- ``paper``: Jain et al.'s minGPT scale — 6 layers, 6 heads, width 192, text 250,
  window 40, AdamW LR 1e-3, cosine with 20% linear warm-up, 200K iterations, full
  next-token loss. The paper states no batch size for pretraining; we use its
  fine-tuning batch, 96. For a GPU.
- ``cpu`` (default): the same task and protocol, shrunk to reach >= 95% counting
  accuracy on the main operand within minutes on two CPU cores (README, benchmarks/).
  Text 48 (window 40 still fits), 4 layers x width 128, and loss on the answer only:
  on CPU the step is compute-bound and the answer-only loss is what the counting
  capability needs.
- ``demo``: the CPU protocol on a model small enough for ``make demo`` to tell the
  paper's story in under 5 minutes on two cores: 2 layers x 4 heads x width 64, the
  low prior (a=0.999, b=0.001, whose base counts b at about the paper's 27%), batch 64
  for fine-tuning and reverse fine-tuning, which runs 200 steps, and 256 examples per
  evaluation while training (the reverse fine-tuning curves). Its pretrained base
  and the Scr.+FT control are shipped (examples/bases/), so the demo does not pretrain.
- ``smoke``: a few steps of a tiny model, only to check the wiring end to end (CI).

Fine-tuning (docs/protocol.md "Fine-tuning"): the paper fine-tunes 10K steps, batch 96, at
small / medium / large LR = 1e-6 / 1e-5 / 1e-4. Adam moves each weight by about the
LR per step, so what a preset controls is the total update budget lr x steps: 0.01 /
0.1 / 1 in the paper. The CPU preset fine-tunes 400 steps and keeps those budgets,
so its LRs are 2.5e-5 / 2.5e-4 / 2.5e-3. Dividing the pretraining LR instead (the
paper's main text: /100, /10) would leave a 400-step fine-tune almost unable to move
at the small LR, which is not the regime the paper studies. Reverse fine-tuning
(revive) runs one preset step lower (LR / 10) for ``reft_steps`` steps (the
fine-tuning steps, except in the demo preset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wrapcli.core.errors import UsageError
from wrapcli.models.build import ModelShape


@dataclass(frozen=True)
class Preset:
    shape: ModelShape
    text_len: int
    window: int
    steps: int
    batch_size: int
    lr: float
    loss: str
    prior: str
    eval_every: int
    eval_size: int
    ft_steps: int
    ft_batch_size: int
    ft_lrs: tuple[tuple[str, float], ...]  # (name, lr) from small to large
    reft_steps: int  # reverse fine-tuning (revive) steps

    def __post_init__(self):
        from wrapcli.tasks.spec import parse_prior

        counts = {"steps": self.steps, "batch_size": self.batch_size, "eval_every": self.eval_every,
                  "eval_size": self.eval_size, "ft_steps": self.ft_steps, "ft_batch_size": self.ft_batch_size,
                  "reft_steps": self.reft_steps, "text_len": self.text_len, "window": self.window}
        bad = [k for k, v in counts.items() if not (isinstance(v, int) and v >= 1)]
        lrs = [lr for _, lr in self.ft_lrs]
        if bad:
            raise ValueError(f"preset: {', '.join(bad)} must be positive integers")
        if self.window > self.text_len:
            raise ValueError(f"preset: window {self.window} exceeds text_len {self.text_len}")
        if self.loss not in ("full", "answer"):
            raise ValueError(f"preset: loss must be full or answer, not {self.loss!r}")
        if not (self.lr > 0 and lrs and all(0 < x < y for x, y in zip(lrs, lrs[1:] + [float("inf")]))):
            raise ValueError("preset: learning rates must be positive, fine-tuning ones from small to large")
        if self.shape.d_model % self.shape.n_heads:
            raise ValueError(f"preset: width {self.shape.d_model} is not a multiple of {self.shape.n_heads} heads")
        parse_prior(self.prior)


PRESETS = {
    "paper": Preset(
        shape=ModelShape("gpt2", 6, 6, 192), text_len=250, window=40, steps=200_000,
        batch_size=96, lr=1e-3, loss="full", prior="a=0.9,b=0.1", eval_every=2000,
        eval_size=1000, ft_steps=10_000, ft_batch_size=96,
        ft_lrs=(("small", 1e-6), ("medium", 1e-5), ("large", 1e-4)), reft_steps=10_000,
    ),
    "cpu": Preset(
        shape=ModelShape("gpt2", 4, 4, 128), text_len=48, window=40, steps=600,
        batch_size=128, lr=1e-3, loss="answer", prior="a=0.9,b=0.1", eval_every=100,
        eval_size=512, ft_steps=400, ft_batch_size=96,
        ft_lrs=(("small", 2.5e-5), ("medium", 2.5e-4), ("large", 2.5e-3)), reft_steps=400,
    ),
    "demo": Preset(
        shape=ModelShape("gpt2", 2, 4, 64), text_len=48, window=40, steps=600,
        batch_size=128, lr=1e-3, loss="answer", prior="a=0.999,b=0.001", eval_every=100,
        eval_size=256, ft_steps=400, ft_batch_size=64,
        ft_lrs=(("small", 2.5e-5), ("medium", 2.5e-4), ("large", 2.5e-3)), reft_steps=200,
    ),
    "smoke": Preset(
        shape=ModelShape("gpt2", 2, 2, 32), text_len=48, window=40, steps=20,
        batch_size=16, lr=1e-3, loss="answer", prior="a=0.9,b=0.1", eval_every=10,
        eval_size=64, ft_steps=10, ft_batch_size=16,
        ft_lrs=(("small", 2.5e-5), ("medium", 2.5e-4), ("large", 2.5e-3)), reft_steps=10,
    ),
}


def resolve_lr(lr: str, names: dict[str, float] | Preset) -> tuple[float, str | None]:
    """The one reading of ``--lr`` (built-in and compiled models): a name of ``names``
    (small / medium / large: a preset's fine-tuning LRs, or the compiled recipe's) or a
    number such as ``3e-5``; the LR and its name (None for a number)."""
    if isinstance(names, Preset):
        names = dict(names.ft_lrs)
    if lr in names:
        return names[lr], lr
    try:
        value = float(lr)
    except ValueError:
        raise UsageError(f"--lr {lr!r}: unknown learning-rate preset (known: {', '.join(names)}; or a "
                         "number like 1e-3)") from None
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"--lr must be finite and > 0, got {lr}")
    return value, None


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]
