"""Whole jobs behind the training commands: resolve the preset and flags into a task
spec, a model and a training config, run the loop, evaluate, and save with lineage."""

from __future__ import annotations

from pathlib import Path

from wrapcli import __version__, checkpoint, reports
from wrapcli.errors import WrapError
from wrapcli.files import check_writable
from wrapcli.evaluation import evaluate
from wrapcli.models import ModelShape, build_config, build_model
from wrapcli.presets import Preset
from wrapcli.tasks import vocab
from wrapcli.tasks.sequences import seq_len
from wrapcli.tasks.spec import parse_components, parse_prior, TaskSpec
from wrapcli.training import TrainConfig, train


def _pick(value, default):
    return default if value is None else value


def state_path(out: str) -> Path:
    """Where a run writing ``out`` keeps its resumable state."""
    return Path(f"{out}.state")


def pretrain(*, out, task, preset: Preset, prior=None, text_len=None, window=None, k=6,
             offset=40, arch=None, layers=None, heads=None, d_model=None, steps=None,
             batch_size=None, lr=None, loss=None, eval_every=None, eval_size=None,
             resume=False, save_every=None, seed=0, device="auto", on_step=None) -> dict:
    """Pretrain a fresh model; writes the checkpoint ``out`` and returns the results."""
    from wrapcli.commands._options import resolve_device

    if str(out) == "-":
        raise WrapError("a checkpoint cannot be written to stdout; give a file name")
    if not str(out).endswith(".safetensors"):
        raise WrapError(f"checkpoint name must end in .safetensors: {out}")
    device = resolve_device(device)
    spec = TaskSpec(
        components=parse_components(task),
        prior=parse_prior(_pick(prior, preset.prior)),
        text_len=_pick(text_len, preset.text_len),
        window=_pick(window, preset.window),
        k=k, offset=offset, seed=seed,
    )
    shape = ModelShape(
        _pick(arch, preset.shape.arch), _pick(layers, preset.shape.n_layers),
        _pick(heads, preset.shape.n_heads), _pick(d_model, preset.shape.d_model),
    )
    cfg = TrainConfig(
        steps=_pick(steps, preset.steps), batch_size=_pick(batch_size, preset.batch_size),
        lr=_pick(lr, preset.lr), loss=_pick(loss, preset.loss),
        eval_every=_pick(eval_every, preset.eval_every), eval_size=_pick(eval_size, preset.eval_size),
    )
    check_writable(out)  # fail before training, not after
    model = build_model(build_config(shape, vocab.VOCAB_SIZE, seq_len(spec.text_len)), seed)
    log = train(model, spec, cfg, device=device, state_path=state_path(out), resume=resume,
                save_every=save_every, on_step=on_step)
    lineage = [lineage_entry("train", None, spec, cfg, seed)]
    checkpoint.save(out, model, vocab=vocab.TOKENS, task=spec.to_dict(), lineage=lineage)
    state_path(out).unlink(missing_ok=True)
    final = evaluate(model, spec, cfg.eval_size, device)
    return {
        "checkpoint": str(out),
        "task": spec.to_dict(),
        "model": shape.to_dict(),
        "n_params": sum(p.numel() for p in model.parameters()),
        "train": cfg.to_dict(),
        "device": device,
        "log": log,
        "final_eval": final,
    }


def lineage_entry(kind: str, parent_sha256, spec: TaskSpec, cfg: TrainConfig, seed: int) -> dict:
    return {
        "kind": kind,
        "parent_sha256": parent_sha256,
        "command": reports.command_line(),
        "seed": seed,
        "steps": cfg.steps,
        "lr": cfg.lr,
        "task": spec.name,
        "wrapcli_version": __version__,
        "created": reports.now(),
    }


