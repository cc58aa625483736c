"""`wrapcli revive`: load the fine-tuned model and its controls, check they match,
reverse fine-tune each over seeds (built-in task, or the user's prompt/answer records:
the relearning test), and assemble the curves and the speed-up (wrapcli/analyses/revival.py) into
the report's results (schema REVIVE)."""

from __future__ import annotations

import gc
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from wrapcli.analyses.revival import (
    MIN_SEEDS,
    Curve,
    check_threshold,
    curves_result,
    eval_grid,
    resolve_settings,
    run_curve,
    shifted,
)
from wrapcli.core.errors import UsageError
from wrapcli.models.lineage import check_not_itself, check_same_shapes, check_same_signature, lineage_entry, signature


def run_text_curve(path, train_path, eval_path, cfg, seeds, steps, device, on_progress=None, lora=None,
                   loaded: list | None = None, checkpointing: bool = False, shard: bool = False):
    """Relearning on user records: train a fresh load of ``path`` (or LoRA adapters on it,
    with ``lora``) on ``train_path`` for each seed (the seed orders the records), scoring
    ``eval_path`` (held out) at ``steps``; ``loaded``, a list holding a model already
    loaded from ``path`` and not yet changed, gives it up to the first seed (a load of an
    8B model takes tens of seconds; the caller keeps no reference to it). Returns the
    record kind's metric per seed and step, the mean answer loss per seed and step, each
    record's correctness after the last step per seed, the mean answer loss on the
    relearning records after the last step per seed (did the attack train?), and with
    ``lora`` the adapters' description (wrapcli/training/lora.py ``describe``). ``checkpointing``: gradient checkpointing
    while it trains (wrapcli/models/build.py). Under torchrun every rank trains its share of each
    batch and rank 0 alone scores (the other ranks' lists stay empty); with ``shard`` the
    model is fully sharded over them and every rank scores it (a collective forward)."""
    from wrapcli.core.distributed import is_main
    from wrapcli.models import checkpoint
    from wrapcli.textdata.textscore import score_records, summarize
    from wrapcli.textdata.userdata import load_tokenizer, text_data
    from wrapcli.training.loop import train

    metric, loss, final, relearn_loss = [], [], [], []
    tok = load_tokenizer(path)
    last_step = max(steps)
    train_set = held = adapters = None
    for k, seed in enumerate(seeds):
        progress = shifted(on_progress, k * cfg.steps)
        if loaded:
            model = loaded.pop().to(device)
        else:
            model = checkpoint.load(path, device=device).model
        if checkpointing:
            from wrapcli.models.build import enable_checkpointing

            enable_checkpointing(model)
        if lora is not None:
            from wrapcli.training.lora import attach, describe

            wrapped = attach(model, lora)  # the adapters are injected into model itself; only they train
            adapters = adapters or describe(wrapped, lora)
            del wrapped
        if train_set is None:  # tokenized once for all seeds: the seed only orders the records
            train_set = text_data(train_path, path, model, 0, tokenizer=tok, kinds=TRAINABLE)
            held = text_data(eval_path, path, model, 0, tokenizer=tok, kinds=TRAINABLE)
        data = replace(train_set, seed=seed)
        row_metric, row_loss, last = [], [], []

        def record(model=model, held=held, row_metric=row_metric, row_loss=row_loss, last=last, final_step=False):
            recs = score_records(model, held, device)
            r = summarize(held, recs)
            row_metric.append(r["accuracy"])
            row_loss.append(r["loss"])
            last[:] = [float(x["correct"]) for x in recs]
            if final_step:  # the relearning records themselves: did the attack train?
                relearn_loss.append(summarize(train_set, score_records(model, train_set, device))["loss"])
            model.train()

        def on_step(step, metrics, record=record, progress=progress):
            if progress:
                progress(step, metrics)
            if step in steps:
                record(final_step=step == last_step)

        if is_main():
            record()  # step 0
        train(model, data, cfg, device=device, on_step=on_step, shard=shard)
        metric.append(row_metric)
        loss.append(row_loss)
        final.append(last)
        del model, record, on_step  # the next seed's copy must not load beside this one
        gc.collect()
    return metric, loss, final, relearn_loss, adapters


TRAINABLE = ("prompt", "choice")  # record kinds relearning trains on and scores


def parse_lrs(lr: str | None, preset, lineage, lora: bool = False) -> tuple[list[float], str]:
    """``--lr``: one value or a comma-separated grid (names or numbers); without it the
    attacker's default grid, LoRA's with ``lora`` (wrapcli/analyses/relearning.py)."""
    from wrapcli.analyses.relearning import lr_grid
    from wrapcli.training.presets import resolve_lr

    if lr is None:
        return lr_grid(lineage, lora)
    values = []
    for part in lr.split(","):
        try:
            value, _ = resolve_lr(part.strip(), preset)
        except UsageError:
            raise UsageError(f"--lr {lr}: {part.strip()!r} is not a number or small / medium / large") from None
        if not 0 < value < 1:
            raise UsageError(f"--lr {lr}: each learning rate must be in (0, 1), got {value:g}")
        values.append(value)
    if len(set(values)) < len(values):
        raise UsageError(f"--lr {lr}: a learning rate is given twice")
    return values, f"--lr {lr}"


def planned_steps(*, ckpt_path, data, lr, preset: str, steps, seeds, n_controls: int, scratch: bool, save_dir,
                  lora: bool) -> int:
    """Every curve's steps in turn (the progress bar's length), after refusing what a
    compiled (Tracr) model cannot take."""
    from wrapcli.compiled.training import Recipe
    from wrapcli.models import checkpoint
    from wrapcli.training import presets

    p = presets.get(preset)
    compiled = checkpoint.is_compiled(ckpt_path)
    if compiled and (data or n_controls or save_dir):
        raise UsageError("a compiled (Tracr) model is revived on --task against --scratch, without --data, "
                         "--control or --save-dir")
    n_lrs = len(parse_lrs(lr, p, checkpoint.read_lineage(ckpt_path), lora)[0]) if data is not None else 1
    per_run = steps or (Recipe.steps if compiled else p.reft_steps)
    return seeds * (1 + n_controls + int(scratch)) * n_lrs * per_run


def revive_checkpoint(*, ckpt_path, task, data, preset: str, scratch=False, eval_data=None, reference=None,
                      margin=None, lora=None, checkpointing=False, shard=False, eval_size=None, save_dir=None,
                      keep_every=None, **common) -> dict | None:
    """Reverse fine-tuning of any checkpoint: a compiled (Tracr) counter with the paper's
    recipe, the relearning test on user records (``data``), or a built-in task."""
    from wrapcli.models import checkpoint
    from wrapcli.training import presets

    if checkpoint.is_compiled(ckpt_path):
        from wrapcli.runs import compiled as compiled_runs

        return compiled_runs.revive(ckpt_path=ckpt_path, task=task, scratch=scratch, lr=common["lr"],
                                    seeds=common["seeds"], threshold=common["threshold"],
                                    on_progress=common["on_progress"],
                                    recipe_args={"steps": common["steps"], "batch_size": common["batch_size"],
                                                 "eval_size": eval_size})
    common["preset"] = presets.get(preset)
    if data is not None:
        return revive_text(ckpt_path=ckpt_path, data=data, eval_data=eval_data, reference=reference, margin=margin,
                           lora=lora, checkpointing=checkpointing, shard=shard, **common)
    return revive(ckpt_path=ckpt_path, task=task, scratch=scratch, eval_size=eval_size, save_dir=save_dir,
                  keep_every=keep_every, **common)


def revive_text(*, ckpt_path, data, eval_data, controls=(), reference=None, lr, preset, steps=None,
                batch_size=None, seeds=MIN_SEEDS, threshold=None, device="cpu", precision="auto",
                margin=None, lora=None, checkpointing=False, shard=False, on_progress=None) -> dict:
    """The relearning test of unlearning audits (Hu et al. 2024; Deeb & Roger 2024; Lucki
    et al. 2024): fine-tune a Hugging Face model that lost a capability on ``data`` at each
    learning rate of the attacker's grid, and score held-out ``eval_data`` (exact match, or
    choice accuracy) as it returns, against ``controls`` trained identically. The
    relearning criterion (wrapcli/analyses/relearning.py) holds the held-out records' accuracy
    against a floor that a model without the knowledge could reach; with ``reference``
    (the original model) also the recovered fraction at every step."""
    from wrapcli.analyses import relearning
    from wrapcli.core.distributed import is_main, world

    margin = check_text_args(ckpt_path, eval_data, controls, reference, seeds, margin)
    ref = score_references(ckpt_path, data, eval_data, controls, reference, device)
    threshold, threshold_source = text_threshold(threshold, ref.original)
    lrs, lr_source = parse_lrs(lr, preset, ref.lineage, lora is not None)
    grid_results, finals, relearn_loss, adapters = relearning_curves(
        ref, lrs, lr_source, threshold, threshold_source, ckpt_path=ckpt_path, data=data, eval_data=eval_data,
        controls=controls, preset=preset, steps=steps, batch_size=batch_size, seeds=seeds, device=device,
        precision=precision, lora=lora, checkpointing=checkpointing, shard=shard, on_progress=on_progress)
    if not is_main():  # under torchrun: the other ranks trained their shares; rank 0 reports
        return None
    crit = relearning.criterion(
        # with several controls, the floor at each LR is the one that relearned most (the hardest bar)
        lrs=lrs, revived=[f[0] for f in finals],
        controls=[max(f[1:], key=lambda c: float(np.mean(c))) for f in finals] if controls else None,
        eligible=relearning.held_out([r["prompt"] for r in ref.train_set.records], [r["prompt"] for r in ref.held.records]),
        reference_correct=None if ref.ref_recs is None else [r["correct"] for r in ref.ref_recs],
        chance=[r["chance"] for r in ref.start_recs] if ref.held.choices is not None else None,
        start=[r["correct"] for r in ref.start_recs], margin=margin, relearn_loss=relearn_loss)
    chosen = lrs.index(crit["best_lr"]) if crit["best_lr"] is not None else int(np.argmax(
        [g["models"][0]["accuracy"]["mean"][-1] for g in grid_results]))
    start, original = ref.start, ref.original
    return {
        "task": None,
        "data": str(data),
        "eval_data": str(eval_data),
        "metric": start["metric"],
        "reference": None if reference is None else {
            "path": str(reference), "metric": original["metric"], "accuracy": original["accuracy"],
            "n": original["n"], "ci95": original["ci95"]},
        "start": {"accuracy": start["accuracy"], "n": start["n"], "ci95": start["ci95"]},
        **grid_results[chosen],
        "lr_grid": [{"lr": g["lr"], "models": g["models"], "speedup": g["speedup"]} for g in grid_results],
        "relearning": crit,
        "lora": adapters,
        "checkpointing": checkpointing,
        "processes": world().size,
        "fsdp": shard,
    }


def check_text_args(ckpt_path, eval_data, controls, reference, seeds, margin) -> float:
    """revive --data's usage errors before any work; the margin, resolved."""
    from wrapcli.analyses import relearning

    if eval_data is None:
        raise UsageError("revive --data needs --eval-data: held-out records scored as the capability returns")
    check_not_itself(ckpt_path, controls, "--control")
    if reference is not None:
        check_not_itself(ckpt_path, reference, "--reference")
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    margin = relearning.MARGIN if margin is None else margin
    if not 0 <= margin < 1:
        raise UsageError(f"--relearn-margin must be in [0, 1), got {margin}")
    return margin


def score_references(ckpt_path, data, eval_data, controls, reference, device) -> SimpleNamespace:
    """The records, the controls checked, the reference and the fine-tuned model scored
    before any relearning, one model in memory at a time.

    The records need only the checkpoint's config, and the controls and reference are
    checked against the shapes its config gives (a meta-device build), so each of them is
    loaded, checked, scored and dropped before the checkpoint itself is loaded; the
    checkpoint's copy then trains the first curve (``unchanged``) and each later curve loads
    its own."""
    from wrapcli.models import checkpoint
    from wrapcli.textdata.textscore import score_records, summarize
    from wrapcli.textdata.userdata import text_data

    plan = checkpoint.planned(ckpt_path) if (controls or reference is not None) else None
    ck = None if plan else checkpoint.load(ckpt_path, device="cpu")
    config, shapes = plan if plan else (ck.model.config, signature(ck))
    records_of = SimpleNamespace(config=config)  # all text_data reads of the model
    held = text_data(eval_data, ckpt_path, records_of, 0, kinds=TRAINABLE)
    train_set = text_data(data, ckpt_path, records_of, 0, kinds=TRAINABLE)  # a bad file is refused before any work
    shas = []
    for path in controls:
        other = checkpoint.load(path, device="cpu")
        check_same_signature(shapes, signature(other), str(ckpt_path), f"control {path}")
        shas.append(other.sha256)
        del other
    original, ref_recs = None, None
    if reference is not None:
        ref = checkpoint.load(reference, device="cpu")
        check_same_signature(shapes, signature(ref), str(ckpt_path), f"reference {reference}")
        ref_recs = score_records(ref.model.to(device), held, device)
        original = summarize(held, ref_recs)
        del ref
    if ck is None:
        ck = checkpoint.load(ckpt_path, device="cpu")
    start_recs = score_records(ck.model.to(device), held, device)
    out = SimpleNamespace(held=held, train_set=train_set, shas=shas, original=original, ref_recs=ref_recs,
                          start_recs=start_recs, start=summarize(held, start_recs),
                          relearn_start=summarize(train_set, score_records(ck.model, train_set, device))["loss"],
                          sha=ck.sha256, lineage=ck.lineage)
    ck.model.to("cpu")
    out.unchanged = [ck.model]  # the first curve trains this copy rather than loading another
    return out


def text_threshold(threshold, original) -> tuple[float, str]:
    """The accuracy that counts as relearned: --threshold, or 0.9 x the reference's."""
    if threshold is not None:
        check_threshold(threshold)
        return threshold, "--threshold"
    if original is None:
        raise UsageError("give --threshold (accuracy that counts as relearned) or --reference "
                         "(the original model: the threshold is then 0.9 x its accuracy)")
    return 0.9 * original["accuracy"], (
        f"0.9 x the reference's {original['metric'].replace('_', ' ')} {original['accuracy']:.3f}")


def recovered_final(after, ref) -> dict:
    """The recovered fraction after the last step, (after - start) / (reference - start)
    on the held-out records, with a paired bootstrap interval over the records: the three
    accuracies are on the same records, so each resample draws the same records for all."""
    from wrapcli.core.stats import paired_ratio

    start = [float(r["correct"]) for r in ref.start_recs]
    original = [float(r["correct"]) for r in ref.ref_recs]
    value, lo, hi = paired_ratio((after, start), (original, start))
    return {"value": value, "ci95": [lo, hi], "interval": "paired bootstrap over the held-out records"}


def relearning_curves(ref, lrs, lr_source, threshold, threshold_source, *, ckpt_path, data, eval_data, controls,
                      preset, steps, batch_size, seeds, device, precision, lora, checkpointing, shard,
                      on_progress) -> tuple[list, list, list, dict | None]:
    """The curves of the fine-tuned model and each control at every LR of the grid: each
    LR's curves result, each model's per-record correctness after the last step, the
    relearning records' loss before and after (the model under audit), and the adapters."""
    from pathlib import Path

    from wrapcli.core.distributed import is_main, process_group
    from wrapcli.core.runtime import resolve_precision
    from wrapcli.training.loop import TrainConfig

    n_steps = steps or preset.reft_steps
    seed_list = list(range(seeds))
    named = [("revived", ckpt_path, ref.sha), *[(f"control:{Path(c).name}", c, h) for c, h in zip(controls, ref.shas)]]
    grid_results, finals, relearn_loss, adapters = [], [], [], None
    start = ref.start["accuracy"]
    with process_group(device):  # one process group for every curve under torchrun (re-joining races)
        for i, lr_value in enumerate(lrs):
            cfg = TrainConfig(steps=n_steps, batch_size=batch_size or preset.ft_batch_size, lr=lr_value,
                              eval_every=n_steps, precision=resolve_precision(precision, device))
            grid = eval_grid(cfg.steps)
            models, final = [], []
            for j, (name, path, digest) in enumerate(named):
                offset = (i * len(named) + j) * seeds * cfg.steps
                metric, loss, last, trained_loss, adapters = run_text_curve(
                    path, data, eval_data, cfg, seed_list, set(grid), device, shifted(on_progress, offset), lora,
                    loaded=ref.unchanged, checkpointing=checkpointing, shard=shard)
                if not is_main():  # its lists are empty: rank 0 scores and summarises
                    continue
                summary = Curve(name, str(path), digest, metric).summary(grid, threshold, ref.held.n_records)
                summary["loss"] = {"per_seed": loss, "mean": np.mean(loss, axis=0).tolist()}
                if ref.original is not None and ref.original["accuracy"] > start:
                    span = ref.original["accuracy"] - start
                    summary["recovered_fraction"] = [(m - start) / span for m in summary["accuracy"]["mean"]]
                    summary["recovered_final"] = recovered_final(np.mean(last, axis=0), ref)
                models.append(summary)
                final.append(np.mean(last, axis=0).tolist())  # (records,): mean over seeds
                if j == 0:  # the model under audit: did the attack move it at this LR?
                    relearn_loss.append((ref.relearn_start, float(np.mean(trained_loss))))
            if is_main():
                grid_results.append(curves_result(threshold, threshold_source, lr_value, lr_source, cfg, seed_list,
                                                  grid, models, device))
                finals.append(final)
    return grid_results, finals, relearn_loss, adapters


def keeper(ck, spec, cfg, save_dir):
    """--save-dir: the callback that writes each seed's revived checkpoint (at the end, and
    every --keep-every steps), with lineage; the folder is made here."""
    from pathlib import Path

    from wrapcli.models import checkpoint

    if Path(save_dir).exists() and not Path(save_dir).is_dir():
        raise UsageError(f"--save-dir {save_dir}: exists and is not a directory")
    if not Path(save_dir).parent.is_dir():
        raise UsageError(f"--save-dir {save_dir}: its parent directory does not exist")
    Path(save_dir).mkdir(exist_ok=True)

    def keep(seed, model, step):
        entry = lineage_entry("revive", ck.sha256, spec.name, seed, {}, steps=cfg.steps, lr=cfg.lr,
                                         precision=cfg.precision, at_step=step)
        name = f"revived_seed{seed}" + ("" if step == cfg.steps else f"_step{step}")
        checkpoint.save(Path(save_dir) / f"{name}.safetensors", model, vocab=ck.vocab,
                        task=spec.replace(seed=seed).to_dict(), lineage=[*ck.lineage, entry])

    return keep


def revive(*, ckpt_path, task, controls=(), scratch=False, lr=None, preset, steps=None,
           batch_size=None, seeds=MIN_SEEDS, threshold=None, eval_size=None, device="cpu",
           save_dir=None, keep_every=None, precision="auto", on_progress=None) -> dict:
    """Reverse fine-tune ``ckpt_path`` (and the controls) on ``task``; the report's results."""
    from pathlib import Path

    from wrapcli.core.runtime import resolve_precision
    from wrapcli.models import checkpoint
    from wrapcli.models.build import build_model
    from wrapcli.tasks.checks import single_component, task_for
    from wrapcli.training.loop import TrainConfig
    from wrapcli.training.presets import resolve_lr

    check_not_itself(ckpt_path, controls, "--control")
    ck = checkpoint.load(ckpt_path, device="cpu")
    spec = task_for(ck, task)
    component = single_component(spec, "revive", task)
    target = str(component)
    spec = spec.replace(components=(component,), spurious=0.0)
    lr_value, lr_source, threshold, threshold_source = resolve_settings(
        lr=lr, threshold=threshold, seeds=seeds, lineage=ck.lineage, target=target,
        lr_by_name=lambda name: resolve_lr(name, preset))
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

    keep = keeper(ck, spec, cfg, save_dir) if save_dir else None

    def progress(j):  # curve j's steps come after those of the curves before it
        return shifted(on_progress, j * seeds * cfg.steps)

    curves = [Curve("revived", str(ckpt_path), ck.sha256,
                    run_curve(loader(ck), spec, cfg, seed_list, grid, device, progress(0), keep, keep_every))]
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
