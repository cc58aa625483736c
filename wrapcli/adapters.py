"""Where things live inside a causal LM, per architecture (DESIGN.md decision 1).

Analyses never reimplement a model: they reach in through the module names below.
Per block ``layer`` (0-based):

- the residual stream: the block's output hidden state (``hook_resid_post``);
- MLP neurons: the inputs of the MLP output projection, one per input feature;
- attention heads: the inputs of the attention output projection, split per head.

GPT-2 projections are ``Conv1D`` (weight ``(in, out)``), the others ``nn.Linear``
(weight ``(out, in)``); ``in_axis`` says which weight axis indexes the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from wrapcli.errors import WrapError


@dataclass(frozen=True)
class Layout:
    blocks: str  # attribute path of the block list
    mlp_out: str  # within a block: the MLP output projection
    attn_out: str  # within a block: the attention output projection
    in_axis: int  # weight axis that indexes the projection's inputs
    final_norm: str  # the norm between the last block and the unembedding


LAYOUTS = {
    "gpt2": Layout("transformer.h", "mlp.c_proj", "attn.c_proj", 0, "transformer.ln_f"),
    "llama": Layout("model.layers", "mlp.down_proj", "self_attn.o_proj", 1, "model.norm"),
    "mistral": Layout("model.layers", "mlp.down_proj", "self_attn.o_proj", 1, "model.norm"),
    "qwen2": Layout("model.layers", "mlp.down_proj", "self_attn.o_proj", 1, "model.norm"),
    "gpt_neox": Layout("gpt_neox.layers", "mlp.dense_4h_to_h", "attention.dense", 1, "gpt_neox.final_layer_norm"),
}


def resid_hook(layer: int) -> str:
    """The report name of residual-stream point ``layer``: ``hook_embed`` for the
    embedding output (layer -1), ``blocks.{layer}.hook_resid_post`` for block outputs
    (TransformerLens's names, so report keys read the same in both tools)."""
    return "hook_embed" if layer < 0 else f"blocks.{layer}.hook_resid_post"


def resid_layers(n_layers: int) -> list[tuple[int, str]]:
    """``(layer, hook)`` for every residual-stream point, embedding output first."""
    return [(layer, resid_hook(layer)) for layer in range(-1, n_layers)]


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


class Adapter:
    """Named access to one model's blocks, neurons and heads."""

    def __init__(self, model):
        kind = model.config.model_type
        if kind not in LAYOUTS:
            raise WrapError(
                f"unsupported architecture {kind!r} (supported: {', '.join(sorted(LAYOUTS))})"
            )
        self.model = model
        self.layout = LAYOUTS[kind]
        self.blocks = list(_get(model, self.layout.blocks))
        cfg = model.config
        self.n_layers = len(self.blocks)
        self.n_heads = cfg.num_attention_heads
        self.d_model = cfg.hidden_size
        self.head_dim = getattr(cfg, "head_dim", None) or self.d_model // self.n_heads

    @property
    def final_norm(self):
        return _get(self.model, self.layout.final_norm)

    def residual_stream(self, input_ids, attention_mask=None) -> list:
        """Residual stream in ``resid_layers`` order: the embedding output (block 0's input,
        ``hook_embed``) and every block's output (``blocks.{l}.hook_resid_post``), each (B, T, d_model), captured with forward hooks (before
        the final norm, which Hugging Face applies to its last hidden state)."""
        import torch

        caught = []

        def before(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            caught.append(hidden.detach())

        def after(module, args, output):
            caught.append((output[0] if isinstance(output, tuple) else output).detach())

        handles = [self.blocks[0].register_forward_pre_hook(before, with_kwargs=True)]
        handles += [b.register_forward_hook(after) for b in self.blocks]
        try:
            with torch.inference_mode():  # the base model: no vocabulary-sized logits
                self.model.base_model(input_ids=input_ids, attention_mask=attention_mask)
        finally:
            for h in handles:
                h.remove()
        return caught

    def mlp_out(self, layer: int):
        return _get(self.blocks[layer], self.layout.mlp_out)

    def attn_out(self, layer: int):
        return _get(self.blocks[layer], self.layout.attn_out)

    def projection(self, layer: int, kind: str):
        """The output projection whose inputs are the units of ``kind`` (neuron / head)."""
        return self.mlp_out(layer) if kind == "neuron" else self.attn_out(layer)

    def n_units(self, kind: str) -> int:
        """Units of ``kind`` per layer."""
        if kind == "neuron":
            return self.mlp_out(0).weight.shape[self.layout.in_axis]
        return self.n_heads

    def unit_slice(self, kind: str, index: int) -> slice:
        """The input features (along ``in_axis``) that make up one unit."""
        if kind == "neuron":
            return slice(index, index + 1)
        return slice(index * self.head_dim, (index + 1) * self.head_dim)

    def per_unit(self, matrix, kind: str):
        """Sum a projection-shaped tensor over everything but the unit: (n_units,)."""
        per_input = matrix.sum(dim=1 - self.layout.in_axis)  # (in_features,)
        if kind == "neuron":
            return per_input
        return per_input.view(self.n_heads, self.head_dim).sum(dim=1)

    def zero_unit(self, layer: int, kind: str, index: int) -> None:
        """Zero the projection weights that read from one unit (the unit's output is then
        ignored by the model, wherever it is loaded)."""
        import torch

        w = self.projection(layer, kind).weight
        with torch.no_grad():
            if self.layout.in_axis == 0:
                w[self.unit_slice(kind, index), :] = 0
            else:
                w[:, self.unit_slice(kind, index)] = 0
