"""Low-rank adapters (LoRA; Hu et al. 2021) for fine-tuning and relearning on user
records, through the field's own library, peft (the ``lora`` extra).

Relearning attacks in unlearning audits are commonly run with LoRA: a rank-r update
B A of each targeted linear map is trained while the weights stay frozen, so only the
adapters need gradients and optimiser state. wrapcli trains the Hugging Face model with
the adapters injected (peft's ``get_base_model``, so every loss and score reads it as
before) and, unless asked for the adapter alone, merges them into the weights it writes,
so every other command reads the result as an ordinary model. A LoRA relearning is the
weaker attack: a full-parameter one can reach anything a rank-r one can.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

from wrapcli.core.errors import UsageError, WrapError

EXTRA = "lora"
ALL_LINEAR = "all-linear"  # peft: every linear map of the blocks (not the output layer)


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    targets: str = ALL_LINEAR  # comma-separated module names, or all-linear
    alpha: float | None = None  # scale alpha / rank; default 2 x rank (a scale of 2)

    def __post_init__(self) -> None:
        problems = []
        if self.rank < 1:
            problems.append(f"--lora must be a rank >= 1, got {self.rank}")
        if not self.targets.strip() or any(not t.strip() for t in self.targets.split(",")):
            problems.append(f"--lora-targets: give module names separated by commas, or {ALL_LINEAR}")
        if problems:
            raise UsageError("; ".join(problems))

    def target_modules(self):
        if self.targets == ALL_LINEAR:
            return ALL_LINEAR
        return [t.strip() for t in self.targets.split(",")]

    def to_dict(self) -> dict:
        return {**asdict(self), "alpha": self.alpha or 2 * self.rank}


def lora_option(rank: int | None, targets: str) -> LoraSpec | None:
    """``--lora R --lora-targets T`` as a spec (None without --lora), peft checked present."""
    if rank is None:
        return None
    spec = LoraSpec(rank, targets)
    require_peft()
    return spec


def require_peft():
    try:
        import peft
    except ImportError:
        raise WrapError(f"--lora needs peft, the '{EXTRA}' extra: pip install 'wrapcli[{EXTRA}]'") from None
    return peft


def attach(model, spec: LoraSpec):
    """``model`` with LoRA adapters injected (its weights frozen); returns the peft wrapper,
    whose ``get_base_model()`` is ``model`` itself, adapters included."""
    peft = require_peft()
    config = peft.LoraConfig(r=spec.rank, lora_alpha=spec.alpha or 2 * spec.rank, lora_dropout=0.0, bias="none",
                             target_modules=spec.target_modules(), task_type="CAUSAL_LM")
    try:
        with warnings.catch_warnings():  # peft's notices (GPT-2's Conv1D orientation, deprecations)
            warnings.simplefilter("ignore")
            return peft.get_peft_model(model, config)
    except ValueError as e:  # peft: a target that matches no module
        raise UsageError(f"--lora-targets {spec.targets}: {str(e).splitlines()[0][:160]}") from None


def describe(wrapped, spec: LoraSpec) -> dict:
    """What the report and the lineage record: rank, alpha, targets and parameter counts."""
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for n, p in wrapped.get_base_model().named_parameters() if "lora_" not in n)
    targets = sorted(wrapped.peft_config["default"].target_modules)
    return {**spec.to_dict(), "modules": targets, "trainable_params": trainable, "model_params": total}


def merged(wrapped):
    """The model with its adapters merged into the weights (an ordinary model again)."""
    return wrapped.merge_and_unload()
