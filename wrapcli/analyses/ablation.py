"""Directional ablation: project one direction out of the residual stream (Arditi et al.
2024, for refusal; Łucki et al. 2024, "An adversarial perspective on machine unlearning for
AI safety": ablating one direction recovers most of what RMU removed).

The direction at block ``l`` is what fine-tuning added at the answer position: the mean
residual stream after block ``l`` at each record's last prompt position, on the fine-tuned
model minus the same mean on the reference (or, without a reference, the records' mean
minus a contrast set's mean on the fine-tuned model), normalised to a unit vector r.

Ablating r at inference projects it out of everything that writes to the residual stream
(the embeddings, every attention and MLP output), so the stream never holds it: the hook
form. The weight form (Arditi et al.'s orthogonalization) bakes the same projection into
the weights, W <- W - r r^T W for each map's output side and b <- b - r r^T b for its
bias, and unties a tied output embedding first (the unembedding reads the stream; it must
stay as it was). The two give the same logits (tested on three architectures).
"""

from __future__ import annotations

import contextlib


def answer_means(adapter, data, device="cpu", batch_size: int = 16, ignore: int = -100) -> list:
    """The mean residual stream at each record's last prompt position, per point of
    ``resid_layers`` (the embedding output, then each block's output): (d_model,) each."""
    import torch

    rows = data.train_rows  # a multiple-choice record by its correct choice
    sums = None
    for start in range(0, len(rows), batch_size):
        idx = rows[start:start + batch_size]
        batch = data.collate(idx, device)
        pos = torch.tensor([next(i for i, lab in enumerate(data.examples[r][1]) if lab != ignore) - 1 for r in idx],
                           device=device)
        stream = adapter.residual_stream(batch["input_ids"], batch["attention_mask"])
        at = [h[torch.arange(len(idx), device=device), pos].double().sum(0) for h in stream]
        sums = at if sums is None else [a + b for a, b in zip(sums, at)]
    return [s / len(rows) for s in sums]


def directions(tuned_means: list, other_means: list) -> list:
    """Unit vectors of tuned - other per point, and their norms (a zero difference stays zero)."""
    out = []
    for a, b in zip(tuned_means, other_means):
        d = (a - b).float()
        norm = float(d.norm())
        out.append((d / norm if norm > 0 else d, norm))
    return out


def _writers(adapter):
    """Every module that adds to the residual stream: (module, axis of its weight that
    indexes d_model outputs; None for an embedding table, whose rows are residual vectors)."""
    model = adapter.model
    mods = [(model.get_input_embeddings(), None)]
    if adapter.layout.blocks.startswith("transformer."):  # GPT-2's learned positions also write to the stream
        mods.append((model.transformer.wpe, None))
    out_axis = 1 if adapter.layout.in_axis == 0 else 0  # Conv1D (in, out): outputs on axis 1
    for layer in range(adapter.n_layers):
        mods += [(adapter.attn_out(layer), out_axis), (adapter.mlp_out(layer), out_axis)]
    return mods


@contextlib.contextmanager
def ablated(adapter, r):
    """Forward hooks that project ``r`` out of every write to the residual stream."""
    def project(module, args, output):
        if isinstance(output, tuple):
            return (project(module, args, output[0]), *output[1:])
        return output - (output @ r).unsqueeze(-1) * r

    handles = [m.register_forward_hook(project) for m, _ in _writers(adapter)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def orthogonalize(adapter, r) -> None:
    """Bake the projection of ``r`` into the weights, in place (the output embedding
    untied first when it shares the input embedding's matrix)."""
    import torch

    model = adapter.model
    out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
    if out_emb is not None and out_emb.weight.data_ptr() == in_emb.weight.data_ptr():
        out_emb.weight = torch.nn.Parameter(out_emb.weight.detach().clone())
        model.config.tie_word_embeddings = False
        if hasattr(model.config, "get_text_config"):
            model.config.get_text_config().tie_word_embeddings = False
    with torch.no_grad():
        for module, axis in _writers(adapter):
            w = module.weight
            rr = r.to(w.dtype)
            if axis is None:  # an embedding table: each row is a residual vector
                w -= (w @ rr).unsqueeze(-1) * rr
            elif axis == 0:  # nn.Linear (d_model, in)
                w -= torch.outer(rr, rr @ w)
            else:  # Conv1D (in, d_model)
                w -= torch.outer(w @ rr, rr)
            if getattr(module, "bias", None) is not None:
                module.bias -= (module.bias @ rr) * rr
