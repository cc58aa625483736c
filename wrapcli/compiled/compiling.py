"""Compile the paper's RASP programs with Tracr and turn the result into a wrapcli
compiled checkpoint (wrapcli/compiled/model.py). Needs the ``compile`` extra (Tracr, JAX,
Haiku: ``pip install 'wrapcli[compile]'``); nothing else in wrapcli imports this module.

- ``counter``: the count of ``a`` in the input, at every position (Tracr's SelectorWidth:
  one attention layer that attends to BOS and the selected tokens, one MLP that turns
  the attention weight on BOS into the count).
- ``max-id``: the 5th largest of distinct input values, at every position: the rank of
  each value (how many are larger, a SelectorWidth), then an attention that reads the
  value whose rank is 4.
"""

from __future__ import annotations

import numpy as np

from wrapcli.core.errors import WrapError

VOCAB = {"counter": ("a", "b", "c"), "max-id": tuple(range(20))}
BOS, PAD = "BOS", "compiler_pad"


def require_tracr():
    """Tracr's compiler module, or a one-line error naming the extra to install."""
    try:
        from tracr.compiler import compiling
    except ImportError:
        raise WrapError("compile needs Tracr and JAX: pip install 'wrapcli[compile]'") from None
    return compiling


def program(name: str):
    """The RASP program ``name`` computes."""
    from tracr.rasp import rasp

    if name == "counter":
        return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: k == "a")).named("count_a")
    larger = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.GT)).named("n_larger")
    fifth = rasp.Select(larger, larger, lambda k, q: k == 4).named("is_fifth")
    return rasp.categorical(rasp.Aggregate(fifth, rasp.tokens)).named("fifth_largest")


def compile_program(name: str, max_len: int):
    """Tracr's assembled model for ``name`` over inputs of ``max_len`` values, and the
    label Tracr gave the program's output variable."""
    compiling = require_tracr()
    sop = program(name)
    assembled = compiling.compile_rasp_to_model(sop, vocab=set(VOCAB[name]), max_seq_len=max_len,
                                                compiler_bos=BOS, compiler_pad=PAD)
    return assembled, sop.label


def to_torch(name: str, assembled, output_name: str, max_len: int):
    """The wrapcli torch model with the assembled model's weights (haiku ``w`` is
    (in, out); torch Linear's weight is (out, in))."""
    import torch

    from wrapcli.compiled.model import CompiledSpec, build

    cfg = assembled.model_config
    params = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in assembled.params.items()}
    inv_in = {i: t for t, i in assembled.input_encoder.encoding_map.items()}
    inv_out = {i: v for v, i in assembled.output_encoder.encoding_map.items()}
    spec = CompiledSpec(
        program=name, n_layers=cfg.num_layers, n_heads=cfg.num_heads, d_head=cfg.key_size,
        d_mlp=params["transformer/layer_0/mlp/linear_1"]["w"].shape[1],
        d_model=params["token_embed"]["embeddings"].shape[1], max_len=max_len, causal=bool(cfg.causal),
        input_vocab=[_plain(inv_in[i]) for i in range(len(inv_in))], bos=BOS, pad=PAD, output_name=output_name,
        output_values=[_plain(inv_out[i]) for i in range(len(inv_out))],
        residual_labels=list(assembled.residual_labels),
    )
    model = build(spec)
    state = {"token_embed.weight": params["token_embed"]["embeddings"],
             "pos_embed.weight": params["pos_embed"]["embeddings"],
             "unembed": spec.unembedding()}
    for layer in range(cfg.num_layers):
        for part in ("attn/query", "attn/key", "attn/value", "attn/linear", "mlp/linear_1", "mlp/linear_2"):
            p = params[f"transformer/layer_{layer}/{part}"]
            prefix = f"layers.{layer}.{part.replace('/', '.')}"
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = p["w"].T, p["b"]
    model.load_state_dict({k: torch.tensor(np.array(v), dtype=torch.float32) for k, v in state.items()})
    return model.eval()


def add_noise(model, std: float, seed: int) -> None:
    """The paper's N(0, std) noise on every weight (not the fixed readout) before
    fine-tuning, so that no weight sits exactly where Tracr put it."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)


def tracr_outputs(assembled, inputs: list[list]) -> tuple[np.ndarray, list[list]]:
    """Tracr's own forward pass on ``inputs`` (values, without BOS), batched as its
    ``apply`` does one at a time: the final residual stream (B, 1 + max_len, d_model) and
    the decoded output values (BOS position dropped)."""
    import jax.numpy as jnp

    tokens = jnp.array([assembled.input_encoder.encode([BOS, *row]) for row in inputs])
    out = assembled.forward(assembled.params, tokens)
    decoded = [[_plain(v) for v in assembled.output_encoder.decode(row.tolist())[1:]]
               for row in np.asarray(out.unembedded_output)]
    return np.asarray(out.transformer_output.output), decoded


def _plain(value):
    """JSON-friendly values: numpy scalars become Python ones."""
    return value.item() if hasattr(value, "item") else value
