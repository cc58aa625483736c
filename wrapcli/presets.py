"""Presets name whole protocols (DESIGN.md decision 7); explicit flags override them.

- ``paper``: Jain et al.'s minGPT scale — 6 layers, 6 heads, width 192, text 250,
  window 40, AdamW LR 1e-3, cosine with 20% linear warm-up, 200K iterations, full
  next-token loss. The paper states no batch size for pretraining; we use its
  fine-tuning batch, 96. For a GPU.
- ``cpu`` (default): the same task and protocol, shrunk to reach >= 95% counting
  accuracy on the main operand within minutes on two CPU cores (README, benchmarks/).
  Text 48 (window 40 still fits), 4 layers x width 128, and loss on the answer only:
  on CPU the step is compute-bound and the answer-only loss is what the counting
  capability needs.
- ``smoke``: a few steps of a tiny model, only to check the wiring end to end (CI).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from wrapcli.errors import WrapError
from wrapcli.models import ModelShape


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


PRESETS = {
    "paper": Preset(
        shape=ModelShape("gpt2", 6, 6, 192), text_len=250, window=40, steps=200_000,
        batch_size=96, lr=1e-3, loss="full", prior="a=0.9,b=0.1", eval_every=2000,
        eval_size=1000,
    ),
    "cpu": Preset(
        shape=ModelShape("gpt2", 4, 4, 128), text_len=48, window=40, steps=600,
        batch_size=128, lr=1e-3, loss="answer", prior="a=0.9,b=0.1", eval_every=100,
        eval_size=512,
    ),
    "smoke": Preset(
        shape=ModelShape("gpt2", 2, 2, 32), text_len=48, window=40, steps=20,
        batch_size=16, lr=1e-3, loss="answer", prior="a=0.9,b=0.1", eval_every=10,
        eval_size=64,
    ),
}


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise WrapError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]


def as_dict(preset: Preset) -> dict:
    return dataclasses.asdict(preset)
