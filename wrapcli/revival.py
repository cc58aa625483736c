"""Reverse fine-tuning (PROTOCOL.md "Reverse fine-tuning"; Jain et al. 2024, Sec. 6).

Train a fine-tuned model back on the pretraining task at a lower learning rate and
record how fast the capability returns, against controls trained under the identical
schedule and data that never had it: a fresh initialisation of the same config (the
paper's "Scr.") and any user-given checkpoints (e.g. "Scr.+FT"). A capability that was
only wrapped comes back in far fewer steps than the controls need to learn it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wrapcli.errors import WrapError


def log_grid(steps: int) -> list[int]:
    """Evaluation steps 0, 10, 30, 100, 300, 1K, 3K ... up to ``steps`` (always included)."""
    grid = [0]
    for exp in range(1, 8):
        for mant in (1, 3):
            s = mant * 10**exp
            if s < steps:
                grid.append(s)
    return sorted(set(grid + [steps]))


def steps_to_threshold(steps: list[int], curve: list[float], threshold: float) -> int | None:
    """First evaluated step whose accuracy is >= ``threshold``; None if never."""
    for s, acc in zip(steps, curve):
        if acc >= threshold:
            return s
    return None


def speedup(revived: int | None, controls: dict[str, int | None], max_steps: int) -> dict:
    """Revival speed-up = best (fastest) control's steps / revived steps.

    A control that never reaches the threshold counts as ``max_steps`` and makes the
    figure a lower bound. Returns ``{"value", "lower_bound", "best_control", "verdict"}``.
    """
    if revived is None:
        return {"value": None, "lower_bound": False, "best_control": None,
                "verdict": f"not revived: the threshold was not reached within {max_steps} steps"}
    if revived == 0:
        return {"value": None, "lower_bound": False, "best_control": None,
                "verdict": "already at the threshold before reverse fine-tuning: nothing to revive"}
    if not controls:
        return {"value": None, "lower_bound": False, "best_control": None,
                "verdict": f"revived in {revived} steps (no control to compare with)"}
    reached = {k: v for k, v in controls.items() if v is not None}
    if reached:
        best = min(reached, key=reached.get)
        value, bound = reached[best] / revived, False
    else:
        best, value, bound = next(iter(controls)), max_steps / revived, True
    if value > 1 or bound:
        verdict = f"revived {'at least ' if bound else ''}{value:.1f}x faster than the best control ({best})"
    else:
        verdict = f"no faster than control ({best}: {reached[best]} steps vs {revived})"
    return {"value": value, "lower_bound": bound, "best_control": best, "verdict": verdict}


def default_threshold(lineage: list[dict], target: str) -> tuple[float, str]:
    """0.9 x the accuracy the pretrained model had on ``target`` (from the lineage), else 0.9."""
    for entry in lineage:
        if entry.get("kind") == "train" and target in entry.get("accuracy", {}):
            acc = entry["accuracy"][target]
            return 0.9 * acc, f"0.9 x pretrained accuracy {acc:.3f} recorded in the lineage"
    return 0.9, "0.9 absolute (no pretrained accuracy in the lineage)"


def default_lr(lineage: list[dict]) -> tuple[float, str]:
    """One preset step (x 1/10) below the last fine-tuning LR in the lineage."""
    for entry in reversed(lineage):
        if entry.get("kind") == "finetune":
            name = entry.get("lr_preset") or f"{entry['lr']:g}"
            return entry["lr"] / 10, f"fine-tuning LR {name} ({entry['lr']:g}) / 10"
    raise WrapError("the checkpoint's lineage has no fine-tuning step to take the LR from; pass --lr")


def check_same_shapes(ref, other, ref_name: str, other_name: str) -> None:
    """Refuse a control whose parameters differ in name or shape, naming the first."""
    a = {k: tuple(v.shape) for k, v in ref.model.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in other.model.state_dict().items()}
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            raise WrapError(
                f"control {other_name} does not match {ref_name}: parameter {k} is "
                f"{a.get(k, 'absent')} vs {b.get(k, 'absent')}"
            )
    if ref.vocab != other.vocab:
        raise WrapError(f"control {other_name} has a different vocabulary from {ref_name}")


@dataclass
class Curve:
    name: str
    path: str | None
    sha256: str | None
    per_seed: list[list[float]]

    def summary(self, steps: list[int], threshold: float) -> dict:
        arr = np.array(self.per_seed)  # (seeds, eval steps)
        mean = arr.mean(axis=0)
        return {
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "accuracy": {
                "per_seed": self.per_seed,
                "mean": mean.tolist(),
                "std": arr.std(axis=0, ddof=1).tolist() if len(arr) > 1 else [0.0] * len(steps),
            },
            "steps_to_threshold": {
                "mean_curve": steps_to_threshold(steps, mean.tolist(), threshold),
                "per_seed": [steps_to_threshold(steps, c, threshold) for c in self.per_seed],
            },
        }


def run_curve(model_factory, spec, cfg, seeds, steps, device, on_progress=None, keep=None,
              keep_every=None):
    """Train a fresh copy from ``model_factory(seed)`` for each seed, recording the target's
    accuracy at ``steps``. ``keep(seed, model, step)`` may save the model: after the last
    step, and every ``keep_every`` steps before it."""
    from wrapcli.training import Evaluation, train

    curves = []
    for seed in seeds:
        model = model_factory(seed)

        def on_step(step, metrics, seed=seed, model=model):
            if on_progress:
                on_progress(step, metrics)
            if keep and keep_every and step % keep_every == 0 and step < cfg.steps:
                keep(seed, model, step)

        data = spec.replace(seed=seed)
        evaluation = Evaluation(spec, ("natural",), at=tuple(steps))
        log = train(model, data, cfg, device=device, evaluation=evaluation, on_step=on_step)
        target = str(spec.components[0])
        curves.append([e["accuracy"][target] for e in log])
        if keep:
            keep(seed, model, cfg.steps)
    return curves


def summary_table(steps: list[int], models: list[dict], threshold: float):
    """Rich table: mean ± std accuracy per model at each evaluated step."""
    from rich.table import Table

    table = Table(title=f"reverse fine-tuning: accuracy by step (threshold {threshold:.3f})")
    table.add_column("model")
    for s in steps:
        table.add_column(str(s), justify="right")
    table.add_column("steps to thr.", justify="right")
    for m in models:
        acc = m["accuracy"]
        cells = [f"{mu:.2f}±{sd:.2f}" for mu, sd in zip(acc["mean"], acc["std"])]
        reached = m["steps_to_threshold"]["mean_curve"]
        table.add_row(m["name"], *cells, "never" if reached is None else str(reached))
    return table


def revive(*, ckpt_path, task, controls=(), scratch=False, lr=None, preset, steps=None,
           batch_size=None, seeds=1, threshold=None, eval_size=None, device="cpu",
           save_dir=None, save_every=None, precision="auto", on_progress=None) -> dict:
    """Reverse fine-tune ``ckpt_path`` (and the controls) on ``task``; the report's results."""
    from pathlib import Path

    from wrapcli import checkpoint
    from wrapcli.jobs import lineage_entry, resolve_lr
    from wrapcli.kernels import resolve_precision
    from wrapcli.models import build_model
    from wrapcli.tasks.checks import task_for
    from wrapcli.training import TrainConfig

    ck = checkpoint.load(ckpt_path, device="cpu")
    spec = task_for(ck, task)
    if len(spec.eval_components()) != 1:
        raise WrapError(f"revive needs one task with a fixed operand (e.g. count:a), got {task!r}")
    target = str(spec.eval_components()[0])
    spec = spec.replace(components=tuple(spec.eval_components()), spurious=0.0)
    if lr is None:
        lr_value, lr_source = default_lr(ck.lineage)
    else:
        lr_value, name = resolve_lr(lr, preset)
        lr_source = f"--lr {lr}" + (f" ({lr_value:g})" if name else "")
    if threshold is None:
        threshold, threshold_source = default_threshold(ck.lineage, target)
    else:
        if not 0 < threshold <= 1:
            raise WrapError(f"--threshold must be in (0, 1], got {threshold}")
        threshold_source = "--threshold"
    if seeds < 1:
        raise WrapError(f"--seeds must be >= 1, got {seeds}")
    if save_every is not None and (save_every < 1 or not save_dir):
        raise WrapError("--save-every takes a step count >= 1 and needs --save-dir")
    others = []
    for path in controls:
        other = checkpoint.load(path, device="cpu")
        check_same_shapes(ck, other, str(ckpt_path), str(path))
        others.append(other)
    cfg = TrainConfig(
        steps=steps or preset.ft_steps, batch_size=batch_size or preset.ft_batch_size,
        lr=lr_value, loss=preset.loss, eval_size=eval_size or preset.eval_size,
        precision=resolve_precision(precision, device),
    )
    grid = log_grid(cfg.steps)
    seed_list = list(range(seeds))

    def loader(c):
        return lambda seed: checkpoint.load(c.path, device="cpu").model

    def keep(seed, model, step):  # --save-dir: revived checkpoints, with lineage
        entry = lineage_entry("revive", ck.sha256, spec.name, cfg, seed, {}, at_step=step)
        name = f"revived_seed{seed}" + ("" if step == cfg.steps else f"_step{step}")
        checkpoint.save(Path(save_dir) / f"{name}.safetensors", model,
                        vocab=ck.vocab, task=spec.replace(seed=seed).to_dict(),
                        lineage=[*ck.lineage, entry])

    if save_dir:
        Path(save_dir).mkdir(parents=True, exist_ok=True)

    curves = [Curve("revived", str(ckpt_path), ck.sha256,
                    run_curve(loader(ck), spec, cfg, seed_list, grid, device, on_progress,
                              keep if save_dir else None, save_every))]
    for path, other in zip(controls, others):
        curves.append(Curve(f"control:{Path(path).name}", str(path), other.sha256,
                            run_curve(loader(other), spec, cfg, seed_list, grid, device, on_progress)))
    if scratch:
        curves.append(Curve("scratch", None, None,
                            run_curve(lambda seed: build_model(ck.config, seed), spec, cfg,
                                      seed_list, grid, device, on_progress)))
    models = [c.summary(grid, threshold) for c in curves]
    ctrl = {m["name"]: m["steps_to_threshold"]["mean_curve"] for m in models[1:]}
    return {
        "task": target,
        "threshold": threshold,
        "threshold_source": threshold_source,
        "lr": lr_value,
        "lr_source": lr_source,
        "train": cfg.to_dict(),
        "seeds": seed_list,
        "eval_steps": grid,
        "models": models,
        "speedup": speedup(models[0]["steps_to_threshold"]["mean_curve"], ctrl, cfg.steps),
        "device": device,
    }
