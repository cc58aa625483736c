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


LAYOUTS = {
    "gpt2": Layout("transformer.h", "mlp.c_proj", "attn.c_proj", 0),
    "llama": Layout("model.layers", "mlp.down_proj", "self_attn.o_proj", 1),
    "mistral": Layout("model.layers", "mlp.down_proj", "self_attn.o_proj", 1),
    "qwen2": Layout("model.layers", "mlp.down_proj", "self_attn.o_proj", 1),
    "gpt_neox": Layout("gpt_neox.layers", "mlp.dense_4h_to_h", "attention.dense", 1),
}


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
