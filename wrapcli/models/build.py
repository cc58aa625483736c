"""Building the synthetic models: small Hugging Face GPT-2 (default) or Llama configs.

We never reimplement an architecture (docs/design.md decision 1): the models are stock
``transformers`` classes, so every analysis also runs on third-party checkpoints.
Dropout is off: data is sampled online and never repeats, so there is nothing to
regularise against, and it would make runs harder to reproduce.

Shape letters, used in the shape comments of every model-facing module:

- ``B``: rows of a batch; ``n``: examples of a whole set (numpy arrays);
- ``T``: token positions of a model input (a synthetic task's sequence has
  ``T = text_len + 9``; ``text_len``, the terminals of its text, is never abbreviated);
- ``V``: vocabulary size; ``d_model``: residual width; ``n_layers``; ``n_heads``;
  ``d_head = d_model / n_heads``; ``d_mlp``: MLP width (4 d_model for GPT-2);
- ``K``: units pruned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from wrapcli.core.errors import UsageError

ARCHS = ("gpt2", "llama")


@dataclass(frozen=True)
class ModelShape:
    arch: str = "gpt2"
    n_layers: int = 6
    n_heads: int = 6
    d_model: int = 192  # the paper's minGPT width; d_mlp = 4 * d_model

    def __post_init__(self) -> None:
        problems = []
        if self.arch not in ARCHS:
            problems.append(f"unknown architecture {self.arch!r} (known: {', '.join(ARCHS)})")
        for name, flag in (("n_layers", "--layers"), ("n_heads", "--heads"), ("d_model", "--d-model")):
            if getattr(self, name) < 1:
                problems.append(f"{name} ({flag}) must be >= 1")
        if self.n_heads >= 1 and self.d_model % self.n_heads:
            problems.append(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if not problems:
            from wrapcli.core.runtime import check_memory

            # weights, gradients and two AdamW moments of 12 d^2 per block: before anything is built
            check_memory("--layers/--d-model", self.n_layers, 16 * 12 * self.n_layers * self.d_model**2,
                         f"training a {self.n_layers}-block model of width {self.d_model}")
        if problems:
            raise UsageError("invalid model: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)


def build_config(shape: ModelShape, vocab_size: int, n_positions: int, special: dict | None = None):
    """A stock config of ``shape``; ``special`` (bos/eos/pad token ids) defaults to the
    synthetic tasks' vocabulary."""
    from transformers import GPT2Config, LlamaConfig

    from wrapcli.tasks import vocab

    if special is None:
        special = dict(bos_token_id=vocab.BOS, eos_token_id=vocab.EOS, pad_token_id=vocab.PAD)
    if shape.arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size, n_positions=n_positions, n_embd=shape.d_model,
            n_layer=shape.n_layers, n_head=shape.n_heads, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, tie_word_embeddings=True, **special,
        )
    return LlamaConfig(
        vocab_size=vocab_size, max_position_embeddings=n_positions,
        hidden_size=shape.d_model, intermediate_size=4 * shape.d_model,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_heads, tie_word_embeddings=False, **special,
    )


def build_model(config, seed: int):
    """A freshly initialised model; the seed fixes the initial weights."""
    import torch
    from transformers import AutoModelForCausalLM


    quiet_transformers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.float()


def quiet_transformers() -> None:
    """transformers' own progress bars and warnings would break our stderr contract (and
    accelerate's notice that a dispatched model's weights were offloaded: the report says
    where each module went)."""
    import logging

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)


def context_length(config) -> int | None:
    """Positions the model can attend over: ``max_position_embeddings`` (GPT-2 maps it to
    ``n_positions``), or None when the config states none (e.g. rotary models without it)."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def enable_checkpointing(model) -> None:
    """Gradient checkpointing (Hugging Face's): each block's activations are recomputed in
    the backward pass instead of kept, for long records on large models; the same
    gradients for about a third more compute. Non-reentrant, so LoRA's frozen inputs need
    no special handling."""
    from wrapcli.core.errors import UsageError

    if not getattr(model, "supports_gradient_checkpointing", False):
        raise UsageError(f"--checkpointing: {type(model).__name__} does not support gradient checkpointing")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
