"""Reverse fine-tuning (docs/protocol.md "Reverse fine-tuning"; Jain et al. 2024, Sec. 6).

Train a fine-tuned model back on the pretraining task at a lower learning rate and
record how fast the capability returns, against controls trained under the identical
schedule and data that never had it: a fresh initialisation of the same config (the
paper's "Scr.") and any user-given checkpoints (e.g. "Scr.+FT"). A capability that was
only wrapped comes back in far fewer steps than the controls need to learn it. Running
a revival over checkpoints (loading, controls, the report) is wrapcli/runs/revive.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wrapcli.core.errors import UsageError, WrapError


def eval_grid(steps: int) -> list[int]:
    """Evaluation steps 0, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150 ... up to ``steps``
    (always included). Neighbours are at most 1.5x apart, so with interpolation between
    them a speed-up of 2x is resolved at any scale."""
    grid = [0] + [s for s in (5, 7) if s < steps]
    for exp in range(1, 8):
        for mant in (1, 1.5, 2, 3, 4, 5, 7):
            s = int(mant * 10**exp)
            if s < steps:
                grid.append(s)
    return sorted(set(grid + [steps]))


def steps_to_threshold(steps: list[int], curve: list[float], threshold: float) -> float | None:
    """Step at which ``curve`` first reaches ``threshold``, interpolated linearly in
    log(step) between the last evaluation below it and the first at or above it (linearly
    in step from step 0); 0 if it starts there; None if never."""
    for i, (s, acc) in enumerate(zip(steps, curve)):
        if acc >= threshold:
            if i == 0:
                return float(s)
            s0, a0 = steps[i - 1], curve[i - 1]
            frac = (threshold - a0) / (acc - a0)
            if s0 == 0:
                return float(frac * s)
            return float(np.exp(np.log(s0) + frac * (np.log(s) - np.log(s0))))
    return None


MIN_SEEDS = 3  # a revival claim rests on at least this many reFT seeds (compare enforces it)


def speedup(revived: list[float | None], controls: dict[str, list[float | None]], max_steps: int) -> dict:
    """Revival speed-up over each control: geometric-mean steps-to-threshold of the control
    over the revived model's, with a bootstrap interval over seeds (wrapcli/core/stats.py).

    A control seed that never reaches the threshold counts as ``max_steps``, which makes
    that control's figure a lower bound (``lower_bound``). The headline is the control
    with the smallest speed-up (the hardest comparison)."""
    from wrapcli.core.stats import bootstrap_ratio

    out = {"value": None, "ci95": None, "lower_bound": False, "best_control": None,
           "n_seeds": len(revived), "controls": {}}
    if any(r is None for r in revived):
        missed = sum(r is None for r in revived)
        return {**out, "status": "not_revived",
                "verdict": f"not revived: {missed} of {len(revived)} seeds did not reach the threshold "
                           f"within {max_steps} steps"}
    if any(r <= 0 for r in revived):
        return {**out, "status": "already_there",
                "verdict": "already at the threshold before reverse fine-tuning: nothing to revive"}
    if not controls:
        return {**out, "status": "no_control",
                "verdict": f"revived in {np.exp(np.mean(np.log(revived))):.0f} steps "
                           f"(geometric mean of {len(revived)} seeds; no control to compare with)"}
    for name, steps in controls.items():
        censored = any(s is None for s in steps)
        filled = [max_steps if s is None else max(s, 1e-9) for s in steps]
        value, lo, hi = bootstrap_ratio(filled, revived)
        out["controls"][name] = {"value": value, "ci95": [lo, hi], "lower_bound": censored,
                                 "steps_to_threshold": steps}
    best = min(out["controls"], key=lambda k: out["controls"][k]["value"])
    c = out["controls"][best]
    bound = "at least " if c["lower_bound"] else ""
    verdict = (f"revived {bound}{c['value']:.1f}x as fast as the fastest control ({best}), "
               f"95% interval [{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}] over {len(revived)} seeds")
    if len(revived) < MIN_SEEDS:
        verdict += f"; too few seeds for a claim (>= {MIN_SEEDS})"
    elif len(set(revived)) == 1 and all(len(set(v)) == 1 for v in controls.values()):
        verdict += (
            "; every seed gave the same run (e.g. a batch holding every record), so the interval shows no seed-to-seed spread"
        )
    return {
        **out,
        "status": "compared",
        "value": c["value"],
        "ci95": c["ci95"],
        "lower_bound": c["lower_bound"],
        "best_control": best,
        "verdict": verdict,
    }


def default_threshold(lineage: list[dict], target: str) -> tuple[float, str]:
    """0.9 x the accuracy the pretrained (or compiled) model had on ``target`` (from the
    lineage), else 0.9."""
    for entry in lineage:
        if entry.get("kind") in ("train", "compile") and target in entry.get("accuracy", {}):
            acc = entry["accuracy"][target]
            return 0.9 * acc, f"0.9 x pretrained accuracy {acc:.3f} recorded in the lineage"
    return 0.9, "0.9 absolute (no pretrained accuracy in the lineage)"


def default_lr(lineage: list[dict]) -> tuple[float, str]:
    """One preset step (x 1/10) below the last fine-tuning LR in the lineage."""
    for entry in reversed(lineage):
        if entry.get("kind") == "finetune":
            if not isinstance(entry.get("lr"), (int, float)):
                raise WrapError("the checkpoint's last fine-tuning step records no LR; pass --lr")
            name = entry.get("lr_preset") or f"{entry['lr']:g}"
            return entry["lr"] / 10, f"fine-tuning LR {name} ({entry['lr']:g}) / 10"
    raise WrapError("the checkpoint's lineage has no fine-tuning step to take the LR from; pass --lr")


def check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise UsageError(f"--threshold must be in (0, 1], got {threshold}")


def resolve_settings(*, lr: str | None, threshold: float | None, seeds: int, lineage: list[dict], target: str,
                     lr_by_name) -> tuple[float, str, float, str]:
    """revive's settings in one place, for built-in and compiled models alike: the LR
    (``--lr``, a preset name read by ``lr_by_name``, or the fine-tune's LR / 10 from the
    lineage) and the threshold (``--threshold`` in (0, 1], or 0.9 x the pretrained accuracy
    in the lineage), each with the sentence that says where it came from; ``seeds`` >= 1.
    (Relearning on --data reads a grid of LRs instead: wrapcli/runs/revive.py parse_lrs.)"""
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    if lr is None:
        lr_value, lr_source = default_lr(lineage)
    elif "," in lr:
        raise UsageError(f"--lr {lr}: a grid of learning rates is for --data relearning; give one --lr with --task")
    else:
        lr_value, name = lr_by_name(lr)
        lr_source = f"--lr {lr}" + (f" ({lr_value:g})" if name else "")
    if threshold is None:
        threshold, threshold_source = default_threshold(lineage, target)
    else:
        check_threshold(threshold)
        threshold_source = "--threshold"
    return lr_value, lr_source, threshold, threshold_source


@dataclass
class Curve:
    name: str
    path: str | None
    sha256: str | None
    per_seed: list[list[float]]

    def summary(self, steps: list[int], threshold: float, n_eval: int) -> dict:
        from wrapcli.core.stats import t_interval

        arr = np.array(self.per_seed)  # (seeds, eval steps)
        cols = [t_interval(arr[:, j]) for j in range(arr.shape[1])]
        return {
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "accuracy": {
                "n": n_eval,  # examples per evaluation
                "per_seed": self.per_seed,
                "mean": [m for m, _, _ in cols],
                "std": arr.std(axis=0, ddof=1).tolist() if len(arr) > 1 else [0.0] * len(steps),
                "ci95": [[lo, hi] for _, lo, hi in cols],  # t-interval over seeds; a point for one seed
            },
            "steps_to_threshold": {
                "mean_curve": steps_to_threshold(steps, arr.mean(axis=0).tolist(), threshold),
                "per_seed": [steps_to_threshold(steps, c, threshold) for c in self.per_seed],
            },
        }


def shifted(on_progress, offset: int):
    """``on_progress(step, metrics)`` with ``offset`` added to the step, so runs that follow
    one another (seeds, then models) report one count that only grows."""
    if on_progress is None:
        return None
    return lambda step, metrics: on_progress(offset + step, metrics)


def run_curve(model_factory, spec, cfg, seeds, steps, device, on_progress=None, keep=None, keep_every=None):
    """Train a fresh copy from ``model_factory(seed)`` for each seed, recording the target's
    accuracy at ``steps``. ``keep(seed, model, step)`` may save the model: after the last
    step, and every ``keep_every`` steps before it. ``on_progress`` counts the steps of
    every seed in turn (seed k's step s is k x cfg.steps + s)."""
    from wrapcli.training.loop import Evaluation, train

    curves = []
    for k, seed in enumerate(seeds):
        model = model_factory(seed)
        progress = shifted(on_progress, k * cfg.steps)

        def on_step(step, metrics, seed=seed, model=model, progress=progress):
            if progress:
                progress(step, metrics)
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


def curves_result(threshold, threshold_source, lr_value, lr_source, cfg, seeds, grid, models, device) -> dict:
    """The results both kinds of revival share: settings, curves and the speed-up."""
    ctrl = {m["name"]: m["steps_to_threshold"]["per_seed"] for m in models[1:]}
    return {
        "threshold": threshold,
        "threshold_source": threshold_source,
        "lr": lr_value,
        "lr_source": lr_source,
        "train": cfg.to_dict(),
        "seeds": seeds,
        "eval_steps": grid,
        "models": models,
        "speedup": speedup(models[0]["steps_to_threshold"]["per_seed"], ctrl, cfg.steps),
        "device": device,
    }
