"""`wrapcli revive`: load the fine-tuned model and its controls, check they match,
reverse fine-tune each over seeds (built-in task, or the user's prompt/answer records:
the relearning test), and assemble the curves and the speed-up (wrapcli/revival.py) into
the report's results (schema REVIVE)."""

from __future__ import annotations

import gc

import numpy as np

from wrapcli.errors import UsageError, WrapError
from wrapcli.revival import (
    MIN_SEEDS, Curve, curves_result, default_lr, default_threshold, eval_grid, run_curve, shifted,
)


def run_text_curve(path, train_path, eval_path, cfg, seeds, steps, device, on_progress=None):
    """Relearning on user records: train a fresh load of ``path`` on ``train_path`` for each
    seed (the seed orders the records), scoring ``eval_path`` (held out) at ``steps``.
    Returns (exact match per seed and step, mean answer loss per seed and step)."""
    from wrapcli import checkpoint
    from wrapcli.training import train
    from wrapcli.textscore import score_text
    from wrapcli.userdata import text_data

    exact, loss = [], []
    for k, seed in enumerate(seeds):
        progress = shifted(on_progress, k * cfg.steps)
        model = checkpoint.load(path, device="cpu").model
        data = text_data(train_path, path, model, seed)
        held = text_data(eval_path, path, model, seed)
        row_em, row_loss = [], []

        def record(model=model):
            r = score_text(model, held, device)
            row_em.append(r["exact_match"])
            row_loss.append(r["loss"])
            model.train()

        def on_step(step, metrics, record=record, progress=progress):
            if progress:
                progress(step, metrics)
            if step in steps:
                record()

        record()  # step 0
        train(model, data, cfg, device=device, on_step=on_step)
        exact.append(row_em)
        loss.append(row_loss)
        del model, record, on_step  # the next seed's copy must not load beside this one
        gc.collect()
    return exact, loss


def revive_text(*, ckpt_path, data, eval_data, controls=(), reference=None, lr, preset, steps=None,
                batch_size=None, seeds=MIN_SEEDS, threshold=None, device="cpu", precision="auto",
                on_progress=None) -> dict:
    """The relearning test of unlearning audits (Hu et al. 2024; Deeb & Roger 2024; Lucki
    et al. 2024): fine-tune a Hugging Face model that lost a capability on ``data`` and
    score held-out ``eval_data`` (exact match) as it returns, against ``controls`` trained
    identically; with ``reference`` (the original model) also the recovered fraction
    (relearned - fine-tuned) / (original - fine-tuned) at every step."""
    from pathlib import Path

    from wrapcli import checkpoint
    from wrapcli.checkpoint import check_same_shapes
    from wrapcli.presets import resolve_lr
    from wrapcli.runtime import resolve_precision
    from wrapcli.stats import wilson
    from wrapcli.training import TrainConfig
    from wrapcli.textscore import score_text
    from wrapcli.userdata import text_data

    if eval_data is None:
        raise UsageError("revive --data needs --eval-data: held-out records scored as the capability returns")
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    # Memory: the model, and one other checkpoint at a time while checking; each curve then
    # loads its own copy, so at most one model (with its gradients and AdamW state) trains.
    ck = checkpoint.load(ckpt_path, device="cpu")
    shas = []
    for path in controls:
        other = checkpoint.load(path, device="cpu")
        check_same_shapes(ck, other, str(ckpt_path), f"control {path}")
        shas.append(other.sha256)
        del other
    held = text_data(eval_data, ckpt_path, ck.model, 0)
    if held.identity.split(":")[0] != "prompt":
        raise WrapError(f"{eval_data}: revive scores exact match, so it needs prompt/answer records")
    start = score_text(ck.model, held, device)
    original = None
    if reference is not None:
        ref = checkpoint.load(reference, device="cpu")
        check_same_shapes(ck, ref, str(ckpt_path), f"reference {reference}")
        original = score_text(ref.model, held, device)
        del ref
    sha, lineage = ck.sha256, ck.lineage
    del ck
    if threshold is None:
        if original is None:
            raise UsageError("give --threshold (exact match that counts as relearned) or --reference "
                            "(the original model: the threshold is then 0.9 x its exact match)")
        threshold, threshold_source = 0.9 * original["exact_match"], (
            f"0.9 x the reference's exact match {original['exact_match']:.3f}")
    else:
        if not 0 < threshold <= 1:
            raise UsageError(f"--threshold must be in (0, 1], got {threshold}")
        threshold_source = "--threshold"
    if lr is None:
        lr_value, lr_source = default_lr(lineage)
    else:
        lr_value, name = resolve_lr(lr, preset)
        lr_source = f"--lr {lr}" + (f" ({lr_value:g})" if name else "")
    n_steps = steps or preset.reft_steps
    cfg = TrainConfig(steps=n_steps, batch_size=batch_size or preset.ft_batch_size, lr=lr_value,
                      eval_every=n_steps, precision=resolve_precision(precision, device))
    grid = eval_grid(cfg.steps)
    seed_list = list(range(seeds))
    n_eval = len(held.examples)
    models = []
    for j, (name, path, digest) in enumerate([("revived", ckpt_path, sha),
                                             *[(f"control:{Path(c).name}", c, h) for c, h in zip(controls, shas)]]):
        exact, loss = run_text_curve(path, data, eval_data, cfg, seed_list, set(grid), device,
                                     shifted(on_progress, j * seeds * cfg.steps))
        summary = Curve(name, str(path), digest, exact).summary(grid, threshold, n_eval)
        summary["loss"] = {"per_seed": loss, "mean": np.mean(loss, axis=0).tolist()}
        if original is not None and original["exact_match"] > start["exact_match"]:
            span = original["exact_match"] - start["exact_match"]
            summary["recovered_fraction"] = [(m - start["exact_match"]) / span for m in summary["accuracy"]["mean"]]
        models.append(summary)
    return {
        "task": None,
        "data": str(data),
        "eval_data": str(eval_data),
        "metric": "exact_match",
        "reference": None if reference is None else {
            "path": str(reference), "exact_match": original["exact_match"],
            "ci95": list(wilson(original["exact_match"] * n_eval, n_eval))},
        **curves_result(threshold, threshold_source, lr_value, lr_source, cfg, seed_list, grid, models, device),
    }


def revive(*, ckpt_path, task, controls=(), scratch=False, lr=None, preset, steps=None,
           batch_size=None, seeds=MIN_SEEDS, threshold=None, eval_size=None, device="cpu",
           save_dir=None, keep_every=None, precision="auto", on_progress=None) -> dict:
    """Reverse fine-tune ``ckpt_path`` (and the controls) on ``task``; the report's results."""
    from pathlib import Path

    from wrapcli import checkpoint
    from wrapcli.checkpoint import check_same_shapes, lineage_entry
    from wrapcli.presets import resolve_lr
    from wrapcli.runtime import resolve_precision
    from wrapcli.models import build_model
    from wrapcli.tasks.checks import single_component, task_for
    from wrapcli.training import TrainConfig

    ck = checkpoint.load(ckpt_path, device="cpu")
    spec = task_for(ck, task)
    component = single_component(spec, "revive", task)
    target = str(component)
    spec = spec.replace(components=(component,), spurious=0.0)
    if lr is None:
        lr_value, lr_source = default_lr(ck.lineage)
    else:
        lr_value, name = resolve_lr(lr, preset)
        lr_source = f"--lr {lr}" + (f" ({lr_value:g})" if name else "")
    if threshold is None:
        threshold, threshold_source = default_threshold(ck.lineage, target)
    else:
        if not 0 < threshold <= 1:
            raise UsageError(f"--threshold must be in (0, 1], got {threshold}")
        threshold_source = "--threshold"
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    if keep_every is not None and (keep_every < 1 or not save_dir):
        raise UsageError("--keep-every takes a step count >= 1 and needs --save-dir")
    others = []
    for path in controls:
        other = checkpoint.load(path, device="cpu")
        check_same_shapes(ck, other, str(ckpt_path), f"control {path}")
        others.append(other)
    cfg = TrainConfig(
        steps=steps or preset.reft_steps, batch_size=batch_size or preset.ft_batch_size,
        lr=lr_value, loss=preset.loss, eval_size=eval_size or preset.eval_size,
        precision=resolve_precision(precision, device),
    )
    grid = eval_grid(cfg.steps)
    seed_list = list(range(seeds))

    def loader(c):
        return lambda seed: checkpoint.load(c.path, device="cpu").model

    def keep(seed, model, step):  # --save-dir: revived checkpoints, with lineage
        entry = lineage_entry("revive", ck.sha256, spec.name, seed, {}, steps=cfg.steps, lr=cfg.lr,
                                  precision=cfg.precision, at_step=step)
        name = f"revived_seed{seed}" + ("" if step == cfg.steps else f"_step{step}")
        checkpoint.save(Path(save_dir) / f"{name}.safetensors", model,
                        vocab=ck.vocab, task=spec.replace(seed=seed).to_dict(),
                        lineage=[*ck.lineage, entry])

    if save_dir:
        if Path(save_dir).exists() and not Path(save_dir).is_dir():
            raise UsageError(f"--save-dir {save_dir}: exists and is not a directory")
        if not Path(save_dir).parent.is_dir():
            raise UsageError(f"--save-dir {save_dir}: its parent directory does not exist")
        Path(save_dir).mkdir(exist_ok=True)

    def progress(j):  # curve j's steps come after those of the curves before it
        return shifted(on_progress, j * seeds * cfg.steps)

    curves = [Curve("revived", str(ckpt_path), ck.sha256,
                    run_curve(loader(ck), spec, cfg, seed_list, grid, device, progress(0),
                              keep if save_dir else None, keep_every))]
    for j, (path, other) in enumerate(zip(controls, others), start=1):
        curves.append(Curve(f"control:{Path(path).name}", str(path), other.sha256,
                            run_curve(loader(other), spec, cfg, seed_list, grid, device, progress(j))))
    if scratch:
        curves.append(Curve("scratch", None, None,
                            run_curve(lambda seed: build_model(ck.config, seed), spec, cfg,
                                      seed_list, grid, device, progress(len(curves)))))
    models = [c.summary(grid, threshold, cfg.eval_size) for c in curves]
    return {
        "task": target,
        **curves_result(threshold, threshold_source, lr_value, lr_source, cfg, seed_list, grid, models, device),
    }
