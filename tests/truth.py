"""Models whose truth is known by construction, for end-to-end tests of compare's verdicts.

- ``wrap``: a pretrained counter whose answer is overridden by a known, small change:
  ``k`` neurons of the last block's MLP are made to fire on every input (their input
  weights zeroed, their bias set) and to write the embedding of one wrong answer token
  into the residual stream. Nothing before the last block changes, so the count is still
  there for a probe, and zeroing those k neurons restores the original model exactly.
- ``destroy``: every block re-initialised and trained a little on counting b only, so no
  trace of the count-a circuit is left, whatever the embeddings still hold.
"""

from __future__ import annotations

import torch

from wrapcli.models import checkpoint
from wrapcli.models.adapters import Adapter
from wrapcli.models.build import build_model
from wrapcli.models.lineage import lineage_entry
from wrapcli.tasks import vocab

WRONG = vocab.number_id(0)  # the answer the wrapper forces
K = 4  # neurons the wrapper takes over


def residual_norm(model, tokens) -> float:
    """Mean norm of the final residual stream at the <ans> position."""
    with torch.no_grad():
        return float(Adapter(model).residual_stream(torch.as_tensor(tokens))[-1][:, -1].norm(dim=-1).mean())


def wrap(src, dest, tokens, strength: float = 2.0, bias: float = 3.0) -> list[int]:
    """Write ``dest``: ``src`` with the last block's neurons 0..K-1 forcing ``WRONG``, at
    ``strength`` x the residual stream's norm. Returns the neuron indices."""
    ck = checkpoint.load(src)
    model = ck.model
    adapter = Adapter(model)
    layer = adapter.n_layers - 1
    block = adapter.blocks[layer]
    direction = model.get_input_embeddings().weight[WRONG].detach().clone()
    direction /= direction.norm()
    act = torch.nn.functional.gelu(torch.tensor(bias), approximate="tanh")
    scale = strength * residual_norm(model, tokens) / (K * act)
    with torch.no_grad():
        block.mlp.c_fc.weight[:, :K] = 0  # GPT-2 Conv1D: (in, out); column j feeds neuron j
        block.mlp.c_fc.bias[:K] = bias
        block.mlp.c_proj.weight[:K] = scale * direction  # row j: what neuron j writes
    edit = lineage_entry("edit", ck.sha256, "count:a", 0, {},
                                    note=f"neurons 0..{K - 1} of block {layer} force {WRONG}")
    checkpoint.save(dest, model, vocab=ck.vocab, task=ck.task, lineage=[*ck.lineage, edit])
    return list(range(K))


def destroy(src, dest, steps: int = 60, seed: int = 1) -> None:
    """Write ``dest``: ``src``'s config with fresh blocks, trained ``steps`` on count:b."""
    from wrapcli.tasks.checks import task_for
    from wrapcli.training.loop import TrainConfig, train

    ck = checkpoint.load(src)
    fresh = build_model(ck.config, seed)
    fresh.get_input_embeddings().weight.data.copy_(ck.model.get_input_embeddings().weight.data)
    spec = task_for(ck, "count:b").replace(seed=seed)
    train(fresh, spec, TrainConfig(steps=steps, batch_size=64, lr=3e-3, loss="answer", eval_size=64))
    edit = lineage_entry("finetune", ck.sha256, "count:b", seed, {}, steps=steps, lr=3e-3,
                                    precision="fp32", note="blocks re-initialised, then trained on count:b")
    checkpoint.save(dest, fresh, vocab=ck.vocab, task=spec.to_dict(), lineage=[*ck.lineage, edit])
