"""Where things live inside a causal LM, per architecture (docs/design.md decision 1).

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

from wrapcli.core.errors import WrapError


@dataclass(frozen=True)
class Layout:
    blocks: str  # attribute path of the block list
    mlp_out: str  # within a block: the MLP output projection
    attn_out: str  # within a block: the attention output projection
    in_axis: int  # weight axis that indexes the projection's inputs
    final_norm: str  # attribute path of the norm before the unembedding


LAYOUTS = {
    "gpt2": Layout("transformer.h", "mlp.c_proj", "attn.c_proj", 0, "transformer.ln_f"),
    "llama": Layout("model.layers", "mlp.down_proj", "self_attn.o_proj", 1, "model.norm"),
    "mistral": Layout("model.layers", "mlp.down_proj", "self_attn.o_proj", 1, "model.norm"),
    "qwen2": Layout("model.layers", "mlp.down_proj", "self_attn.o_proj", 1, "model.norm"),
    "gpt_neox": Layout("gpt_neox.layers", "mlp.dense_4h_to_h", "attention.dense", 1, "gpt_neox.final_layer_norm"),
}


def per_unit(matrix, layout: Layout, kind: str, n_heads: int):
    """Sum an output-projection-shaped tensor over everything but the unit that feeds it:
    (d_mlp,) for neurons, (n_heads,) for heads (each head's d_head inputs together)."""
    per_input = matrix.sum(dim=1 - layout.in_axis)  # (in_features,)
    return per_input if kind == "neuron" else per_input.view(n_heads, -1).sum(dim=1)


def layer_of(name: str, outside: int | None = None) -> int | None:
    """The block a parameter belongs to, read from its name (``model.layers.3.mlp...``,
    ``transformer.h.0...``, a compiled model's ``layers.1...``); ``outside`` for a
    parameter outside the blocks (the embeddings, the final norm)."""
    import re

    m = re.search(r"(?:^|\.)(\d+)\.", name)
    return int(m.group(1)) if m else outside


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

    def residual_stream(self, input_ids, attention_mask=None) -> list:
        """Residual stream in ``resid_layers`` order: the embedding output (block 0's input,
        ``hook_embed``) and every block's output (``blocks.{l}.hook_resid_post``), each
        (B, T, d_model), captured with forward hooks (before the final norm, which Hugging
        Face applies to its last hidden state)."""
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

    def decode(self, hidden):
        """Next-token logits read from a residual-stream point: the model's final norm, then
        its unembedding (the logit lens; at the last block's output, the model's own logits)."""
        return self.model.get_output_embeddings()(_get(self.model, self.layout.final_norm)(hidden))

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
        return per_unit(matrix, self.layout, kind, self.n_heads)

    def linears(self, layer: int) -> list[tuple[str, object, int]]:
        """Every linear map of block ``layer`` (attention query/key/value/output, both MLP
        matrices; GPT-2's fused c_attn counts once): ``(name within the block, module, the
        weight axis that indexes its outputs)``. The paper's pruning unit, a "row of a
        weight matrix", is one output feature of one of these."""
        from torch import nn
        from transformers.pytorch_utils import Conv1D

        return [
            (name, m, 1 if isinstance(m, Conv1D) else 0)
            for name, m in self.blocks[layer].named_modules()
            if isinstance(m, (nn.Linear, Conv1D))
        ]

    def param_name(self, layer: int, module: str) -> str:
        """The model-level name of a block module's weight (e.g. model.layers.0.mlp.up_proj.weight)."""
        return f"{self.layout.blocks}.{layer}.{module}.weight"

    def location(self, unit) -> tuple[str, tuple]:
        """Where a pruning unit's weights live: the parameter's name and the index into it
        (wrapcli/analyses/pruning.py's Unit: neuron, head, weight:neuron, weight:head, row:MODULE)."""
        if unit.kind.startswith("row:"):
            module = unit.kind.split(":", 1)[1]
            axis = dict((n, a) for n, _, a in self.linears(unit.layer))[module]
            return self.param_name(unit.layer, module), (unit.index,) if axis == 0 else (slice(None), unit.index)
        kind = unit.kind.split(":")[-1]
        module = self.layout.mlp_out if kind == "neuron" else self.layout.attn_out
        name = self.param_name(unit.layer, module)
        if unit.kind.startswith("weight:"):
            shape = self.projection(unit.layer, kind).weight.shape
            return name, (unit.index // shape[1], unit.index % shape[1])
        sl = self.unit_slice(kind, unit.index)
        return name, (sl,) if self.layout.in_axis == 0 else (slice(None), sl)

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


# -- reading the residual stream -----------------------------------------------------
def layer_features(model, chunks, pick, device="cpu") -> list:
    """Per residual-stream point (``resid_layers`` order), one vector per example: a list of (n, d_model) float16 arrays.

    ``chunks`` yields ``(input_ids, attention_mask or None)`` batches; ``pick(hidden, mask)``
    reduces a (B, T, d_model) layer to (B, d_model) (the answer position, the last token, the mean of
    the last K). Memory: one chunk's activations plus the float16 results."""
    import numpy as np
    import torch

    adapter = Adapter(model)
    per_layer: list[list[np.ndarray]] = [[] for _ in range(adapter.n_layers + 1)]
    for ids, mask in chunks:
        ids = torch.as_tensor(ids, device=device)
        mask = None if mask is None else torch.as_tensor(mask, device=device)
        for layer, h in enumerate(adapter.residual_stream(ids, mask)):
            per_layer[layer].append(pick(h, mask).float().cpu().numpy().astype(np.float16))
    return [np.concatenate(x) for x in per_layer]


def token_chunks(tokens, chunk: int = 256):
    """``(B, T)`` token rows in chunks of ``chunk``, without a mask (every row has one length)."""
    for i in range(0, len(tokens), chunk):
        yield tokens[i : i + chunk], None


def last_positions(k: int = 1):
    """Mean of the last ``k`` real (unpadded, right-padded) tokens; k=1 is the last token."""

    def pick(h, mask):
        import torch

        if mask is None:
            return h[:, -k:].mean(1)
        lengths = mask.sum(1)  # (B,)
        idx = (lengths[:, None] - 1 - torch.arange(k, device=h.device)[None]).clamp(min=0)  # (B, k)
        return torch.gather(h, 1, idx[..., None].expand(-1, -1, h.shape[-1])).mean(1)

    return pick
