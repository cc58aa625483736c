"""The one training loop behind train, finetune and revive (docs/design.md decision 4): AdamW,
linear warm-up then cosine decay, periodic evaluation, resumable state, progress. What it
trains on is wrapcli/training/batches.py (the data protocol); the resume state's format is
wrapcli/training/resume.py.

Data for step ``s`` is a pure function of (task seed, stream, s) (tasks/sequences.py),
and the optimizer state is saved exactly, so a run killed at any point and resumed
from its state file finishes with the same weights as an uninterrupted run.
Defaults the paper leaves open (docs/protocol.md, "Model and pretraining"): weight decay 0.1,
betas (0.9, 0.95) and gradient clipping at 1.0, as in minGPT and nanoGPT; the cosine ends
at lr/100, the paper's fine-tuning floor, used for pretraining too.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from wrapcli.core.distributed import any_rank, check_shardable, mean, process_group
from wrapcli.core.errors import UsageError, WrapError
from wrapcli.core.kernels import autocast, fast_kernels
from wrapcli.tasks.evaluation import EVAL_SEED, evaluate
from wrapcli.tasks.spec import TaskSpec
from wrapcli.training.batches import TaskData, prefetched
from wrapcli.training.lean import pays_to_step_one_at_a_time, step_one_at_a_time, tied_gradients
from wrapcli.training.resume import load_state, save_state

LOSSES = ("full", "answer")


# AdamW moves each weight by about the LR per step; past 1 every step rewrites the model.
MAX_LR = 1.0


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    loss: str = "full"  # "full": next-token loss on the whole sequence (the paper's)
    warmup_frac: float = 0.2
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_size: int = 512
    stream: int = 0  # which training stream of the task spec's seed
    mix: float = 0.0  # fraction of batches from TaskData.mix_spec
    precision: str = "fp32"  # or "bf16" autocast (wrapcli/core/kernels.py)

    def __post_init__(self) -> None:
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"learning rate (--lr) must be finite and > 0, got {self.lr}")
        elif self.lr > MAX_LR:
            problems.append(f"learning rate (--lr) {self.lr:g} is above {MAX_LR:g}: AdamW diverges there")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not 0 <= self.warmup_frac < 1:
            problems.append(f"warm-up fraction must be in [0, 1), got {self.warmup_frac}")
        if not 0.0 <= self.mix < 1.0:
            problems.append(f"mix fraction must be in [0, 1), got {self.mix}")
        if self.precision not in ("fp32", "bf16"):
            problems.append(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.eval_every < 1 or self.eval_size < 1:
            problems.append("eval_every and eval_size must be >= 1")
        if problems:
            raise UsageError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for ``step`` (0-based): linear warm-up, then cosine to lr*min_ratio."""
    warm = int(cfg.warmup_frac * cfg.steps)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def make_optimizer(model, cfg: TrainConfig):
    """AdamW with weight decay on every parameter of two or more dimensions: the matrices
    of the linear layers and the token and position embeddings; none on biases or norms.
    This is nanoGPT's rule (``configure_optimizers``: ``p.dim() >= 2``). minGPT's differs:
    it exempts the embeddings. We keep nanoGPT's because every result so far was trained
    with it, and decaying the embeddings is harmless at these sizes.

    On CUDA the update is torch's fused kernel: its default there (``foreach``) builds
    temporaries over all the weights at once (at 1.5B on an H200 a plain loop with it
    peaked 0.43x of the fp32 weights above wrapcli's fused one, docs/third-party.md). On
    the CPU torch's default is already the one-tensor-at-a-time update, kept so CPU runs
    keep their exact numbers; the loop hands it one gradient at a time (wrapcli/training/lean.py)."""
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    on_cuda = bool(decay + rest) and all(p.device.type == "cuda" for p in decay + rest)
    if on_cuda:  # not for a sharded model's parameters (wrapcli/core/distributed.py)
        from torch.distributed.tensor import DTensor

        on_cuda = not any(isinstance(p, DTensor) for p in decay + rest)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2), **({"fused": True} if on_cuda else {}))


@dataclass(frozen=True)
class Evaluation:
    """What the loop scores while it trains: every (family, operand) of ``spec`` under
    each setting of ``settings``, at the steps ``at`` (default: every ``eval_every``
    steps and the last; step 0 means before the first update)."""

    spec: TaskSpec
    settings: tuple[str, ...] = ("natural",)
    at: tuple[int, ...] | None = None

    def due(self, step: int, cfg: TrainConfig) -> bool:
        if self.at is not None:
            return step in self.at
        return step > 0 and (step % cfg.eval_every == 0 or step == cfg.steps)


def train(
    model,
    data,
    cfg: TrainConfig,
    *,
    device: str = "cpu",
    evaluation: Evaluation | None = None,
    state_path: str | Path | None = None,
    resume: bool = False,
    save_every: int | None = None,
    save_seconds: float = 60.0,
    on_step=None,
    shard: bool = False,
) -> list[dict]:
    """Train ``model`` in place; return the log (one entry per evaluation).

    ``data`` is a TaskSpec (built-in task), a TaskData, or any object with the same
    ``batch(step, cfg, device)``, ``loss(model, batch, cfg)`` and ``identity`` (user text,
    wrapcli/textdata/userdata.py). ``evaluation`` defaults to the task's own components, and to
    none for other data. ``state_path`` receives resumable state every ``save_every``
    steps (or every ``save_seconds`` when that is None); ``resume`` continues from it if
    it exists. ``on_step(step, metrics)`` is called after every step (progress display).
    ``shard``: under torchrun, fully shard the model over the ranks (wrapcli/core/distributed.py);
    ``model`` is then sharded in place, ``on_step`` runs on every rank (a callback that
    scores the model takes part in the collective forward) and no resume state is kept.
    """
    if isinstance(data, TaskSpec):
        data = TaskData(data)
    if evaluation is None and isinstance(data, TaskData):
        evaluation = Evaluation(data.spec)
    _check_sizes(model, data, cfg, evaluation)
    with process_group(device) as world, fast_kernels(model, device, cfg.precision), (
        # wrapcli/training/lean.py; an in-place tied gradient would bypass the reducing hooks of a
        # data-parallel or sharded model
        contextlib.nullcontext() if world.size > 1 else tied_gradients(model, device)
    ):
        if shard:
            check_shardable(resume=resume, save_every=save_every)
        return _loop(model, data, cfg, device, evaluation, None if shard else state_path, resume, save_every,
                     save_seconds, on_step, world, shard)


def _check_sizes(model, data, cfg, evaluation) -> None:
    """--batch-size and --eval-size against the memory they need, before any allocation."""
    from wrapcli.core.runtime import check_batch_memory

    if isinstance(data, TaskData):
        from wrapcli.tasks.sequences import seq_len

        longest = seq_len(data.spec.text_len)
    else:
        longest = max((len(ids) for ids, _ in getattr(data, "examples", [])), default=1)
    check_batch_memory("--batch-size", cfg.batch_size, model.config, longest)
    if evaluation is not None:
        from wrapcli.tasks.evaluation import check_eval_memory

        check_eval_memory("--eval-size", cfg.eval_size, evaluation.spec)


def _loop(model, data, cfg, device, evaluation, state_path, resume, save_every, save_seconds,
          on_step, world, shard=False) -> list[dict]:
    import torch

    net = model
    if shard:
        from wrapcli.core.distributed import shard_model
        from wrapcli.models.adapters import Adapter

        shard_model(model, Adapter(model).blocks, device).train()  # moves each rank's shards to the device
    else:
        model.to(device).train()
    if world.size > 1 and not shard:
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(device).index] if device.startswith("cuda") else None
        net = DistributedDataParallel(model, device_ids=ids)
    rows = world.shard(cfg.batch_size)
    opt = make_optimizer(model, cfg)
    lean_step = pays_to_step_one_at_a_time(opt)  # wrapcli/training/lean.py
    log: list[dict] = []
    start = 0
    if state_path:  # a run killed while writing its state (kill -9) left a temporary beside it
        from wrapcli.core.files import remove_stale_temporaries

        remove_stale_temporaries(Path(state_path).parent, Path(state_path).name)
    if resume and state_path and Path(state_path).exists():
        start, log = load_state(state_path, model, opt, cfg, data.identity)
    if start == 0 and evaluation and evaluation.due(0, cfg) and world.main:
        log.append(_eval_entry(model, evaluation, cfg, device, 0, None))
    t0, last_save, tokens_seen = time.time(), time.time(), 0
    for step, batch in prefetched(data, cfg, start, device, rows):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with autocast(device, cfg.precision):
            loss = data.loss(net, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if lean_step:
            step_one_at_a_time(opt)
        else:
            opt.step()
        tokens_seen += batch["input_ids"].numel() * world.size
        done = step + 1
        metrics = {"lr": lr_at(step, cfg)}
        if evaluation:
            record = evaluation.due(done, cfg)
        else:
            record = done % cfg.eval_every == 0 or done == cfg.steps
        due = bool(state_path) and bool(save_every and done % save_every == 0)
        if state_path and not save_every:  # by the clock: every rank must agree (the loss below is a collective)
            due = any_rank(time.time() - last_save >= save_seconds, device)
        if record or done % 10 == 0 or due:  # .item() syncs with the device (and ranks): not every step
            metrics["loss"] = mean(loss).item()
            if not math.isfinite(metrics["loss"]):  # stop before a broken state is saved or written
                kept = f"; the last good state is {state_path}" if state_path and Path(state_path).exists() else ""
                raise WrapError(f"the training loss became {metrics['loss']} by step {done} "
                                f"(lr {cfg.lr:g}): stopped, no checkpoint written{kept}")
        if not world.main:
            if shard and on_step:  # the callback may score the model: a sharded forward needs every rank
                on_step(done, metrics)
            continue
        if evaluation and record:
            entry = _eval_entry(model, evaluation, cfg, device, done, metrics["loss"])
            entry["tokens_per_s"] = tokens_seen / max(time.time() - t0, 1e-9)
            log.append(entry)
            metrics.update(entry)
            model.train()
        elif record:
            log.append({"step": done, "loss": metrics["loss"], "lr": lr_at(step, cfg)})
        if on_step:
            metrics["tokens_per_s"] = tokens_seen / max(time.time() - t0, 1e-9)
            on_step(done, metrics)
        if state_path and due and done < cfg.steps:
            save_state(state_path, model, opt, cfg, data.identity, done, log)
            last_save = time.time()
    model.eval()
    return log


def _eval_entry(model, evaluation: Evaluation, cfg, device, step, loss) -> dict:
    """A log entry; ``accuracy`` keys are ``"count:a"`` (natural) or ``"count:a C_Te=1"``."""
    model.eval()
    fixed = evaluation.spec.replace(seed=EVAL_SEED)
    scores = evaluate(model, fixed, cfg.eval_size, device, evaluation.settings, precision=cfg.precision)
    named = {comp if setting == "natural" else f"{comp} {setting}": score
             for comp, rows in scores.items() for setting, score in rows.items()}
    return {"step": step, "loss": loss, "lr": lr_at(max(step - 1, 0), cfg),
            "accuracy": {k: s["accuracy"] for k, s in named.items()},
            "accuracy_n": cfg.eval_size, "accuracy_ci95": {k: s["ci95"] for k, s in named.items()}}


