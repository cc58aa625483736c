"""Data-parallel (DDP) and fully sharded (FSDP) training under ``torchrun``.

``torchrun --nproc-per-node N -m wrapcli train …`` starts N copies of the command with
RANK / WORLD_SIZE / LOCAL_RANK in the environment. Results keep the one-process meaning:
every rank draws the same global batch for step s (a pure function of the task seed, the
stream and s) and trains on its contiguous 1/N slice; DDP averages the gradients, which
equals the global-batch gradient because the slices have equal sizes. So ``--batch-size``
is the global batch and the run gives the one-process weights up to float summation
order. Rank 0 alone writes the checkpoint, the resumable state and the reports; every
rank reads the state on ``--resume``. The backend is NCCL on CUDA and gloo on CPU.

With ``--fsdp`` (``finetune --data``, ``revive --data``) the model is fully sharded instead
of replicated (torch's FSDP2, ``fully_shard``: each decoder block one unit, embeddings,
final norm and head the root's): every rank keeps 1/N of each weight, of its gradient and
of its two AdamW moments, and gathers a block's weights only while it computes with it.
Each rank loads the whole model once before sharding it. A sharded model's forward pass is
collective, so every rank scores the records it is scored on (the same numbers), and the
written checkpoint is gathered whole onto rank 0. Sharded runs keep no resume state.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from wrapcli.core.errors import WrapError

# The commands torchrun may launch; the others would only repeat their work N times.
PARALLEL_COMMANDS = ("train", "finetune", "revive")  # revive: with --data


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch_size: int) -> slice:
        """This rank's rows of a global batch."""
        if batch_size % self.size:
            raise WrapError(f"batch size {batch_size} is not divisible by the {self.size} processes")
        n = batch_size // self.size
        return slice(self.rank * n, (self.rank + 1) * n)


def world() -> World:
    """The launch this process belongs to (rank 0 of 1 outside torchrun)."""
    try:
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError:
        raise WrapError("RANK and WORLD_SIZE must be integers") from None


def is_main() -> bool:
    return world().main


@contextlib.contextmanager
def process_group(device: str):
    """Join the torchrun process group for the duration of a training loop (a no-op in
    one process); yields the World."""
    import torch
    import torch.distributed as dist

    w = world()
    if w.size == 1 or dist.is_initialized():
        yield w
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    try:
        yield w
    finally:
        dist.destroy_process_group()


def local_device(device: str) -> str:
    """``cuda`` means this rank's GPU (LOCAL_RANK) under torchrun."""
    if device == "cuda" and world().size > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device


def any_rank(flag: bool, device: str = "cpu") -> bool:
    """Whether ``flag`` holds on any rank (``flag`` in one process): a decision taken from
    each rank's own clock must be the same on every rank before it leads to a collective."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean(value):
    """The mean over ranks of a scalar tensor (itself in one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def check_shardable(*, lora: bool = False, resume: bool = False, save_every=None) -> None:
    """``--fsdp``'s usage errors, before any model is loaded."""
    from wrapcli.core.errors import UsageError

    if world().size < 2:
        raise UsageError("--fsdp shards the model over torchrun's processes: launch with "
                         "torchrun --nproc-per-node 2 (or more) -m wrapcli ...")
    if lora:
        raise UsageError("--fsdp with --lora: adapters train few weights, so plain data-parallel "
                         "(torchrun without --fsdp) already fits; give one of them")
    if resume or save_every:
        raise UsageError("a sharded (--fsdp) run keeps no resume state: drop --resume and --save-every")


def shard_model(model, blocks, device: str):
    """Fully shard ``model`` in place over the torchrun process group on ``device``'s
    kind (torch FSDP2): one unit per decoder block (``blocks``, the adapter's), the rest
    the root's."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(torch.device(device).type, (world().size,))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model) -> bool:
    """Whether ``model`` was fully sharded (``shard_model``)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model) -> dict:
    """A sharded model's weights gathered whole, on rank 0's CPU (collective: every rank
    calls it; the others get an empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
