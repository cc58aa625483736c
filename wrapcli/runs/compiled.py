"""What `finetune`, `prune`, `probe`, `revive` and `compare` (and `eval`'s attention) do
with compiled (Tracr) checkpoints: load and check them, run the analysis
(wrapcli/compiled/training.py and the shared analyses), write the checkpoint and
assemble the report's results in the same schema as for the built-in models
(wrapcli/report/schema.py), so that compare and the summaries read both alike."""

from __future__ import annotations

import time

import numpy as np

from wrapcli.compiled import model as compiled
from wrapcli.compiled import training as ct
from wrapcli.core.errors import UsageError, WrapError
from wrapcli.core.runtime import pin_threads
from wrapcli.models import checkpoint
from wrapcli.models.adapters import layer_of
from wrapcli.models.lineage import check_not_itself, lineage_entry
from wrapcli.runs.results import probe_result, prune_result


def _watch(model, operands, n: int, seed: int) -> dict:
    """count:X with and without the spurious feature (and natural) for each operand."""
    out = {}
    for op in operands:
        out.update(compiled.evaluate(model, n, seed, operand=op, settings=compiled.SETTINGS))
    return out


def _flat(scores: dict) -> tuple[dict, dict, int]:
    """A log entry's accuracy, intervals and n from evaluate's ``{task: {setting: score}}``."""
    acc, ci, n = {}, {}, 0
    for task, rows in scores.items():
        for setting, s in rows.items():
            key = task if setting == "natural" else f"{task} {setting}"
            acc[key], ci[key], n = s["accuracy"], s["ci95"], s["n"]
    return acc, ci, n


def task_dict(spec, operand: str, spurious: float, seed: int) -> dict:
    """The fine-tuning task in the built-in tasks' shape (schema TASK_SPEC)."""
    return {"components": [f"count:{operand}"], "prior": {}, "window": spec.max_len, "k": 0, "offset": 0,
            "text_len": spec.max_len, "spurious": spurious, "spurious_offset": 1,
            "spurious_operands": ["a", "b"], "seed": seed}


def finetune(*, parent, out, task: str, lr: str, spurious: float, recipe_args: dict, seed: int,
             on_progress=None) -> dict:
    """Fine-tune a compiled counter on ``task`` with the paper's SGD recipe; write ``out``
    (with lineage) and return the report's results (schema FINETUNE)."""
    from wrapcli.core.files import sha256

    started = time.time()
    pin_threads()  # --threads: the same count gives the same bits
    model = compiled.load_checkpoint(parent)
    operand = ct.operand_of(model.spec, task)
    if not 0.0 <= spurious <= 1.0:
        raise UsageError(f"--spurious must be in [0, 1], got {spurious}")
    lr_value, lr_name = ct.resolve_lr(lr)
    recipe = ct.Recipe(lr=lr_value, **{k: v for k, v in recipe_args.items() if v is not None})
    watched = sorted({operand, "a"})
    log = []

    def on_eval(step):
        acc, ci, n = _flat(_watch(model, watched, recipe.eval_size, seed=0))
        log.append({"step": step, "loss": losses[-1] if step else None, "lr": recipe.lr, "accuracy": acc,
                    "accuracy_n": n, "accuracy_ci95": ci})

    losses = []

    def on_step(step, loss):
        if not np.isfinite(loss):
            raise UsageError(f"the loss became {loss} at step {step}; nothing was written: lower --lr")
        losses.append(loss)
        if on_progress:
            on_progress(step, {"loss": loss})

    steps = list(range(recipe.eval_every, recipe.steps + 1, recipe.eval_every))
    ct.train(model, operand, recipe, seed, spurious, on_eval=on_eval,
             eval_steps=sorted(set(steps) | {recipe.steps}), on_step=on_step)
    final = _watch(model, watched, 1000, seed=1)
    entry = lineage_entry("finetune", sha256(parent), task, seed, final, steps=recipe.steps,
                                     lr=recipe.lr, precision="fp32", lr_preset=lr_name, spurious=spurious,
                                     optimizer="sgd", momentum=ct.MOMENTUM)
    checkpoint.save_compiled(out, model, lineage=[*checkpoint.read_lineage(parent), entry])
    return {"preset": "compiled", "wall_s": time.time() - started, "train": recipe.to_dict(), "device": "cpu",
            "log": log, "checkpoint": str(out), "parent": {"path": str(parent), "sha256": sha256(parent)},
            "task": task_dict(model.spec, operand, spurious, seed), "lr_preset": lr_name, "final_eval": final}


def prune(*, ckpt_path, task: str, also=(), ks=(0, 1, 2, 3, 4, 5), n: int = 960, eval_n: int = 1000,
          seed: int = 0, unit: str | None = None, revert_to=None) -> dict:
    """Zero the K units (single weights, the paper's unit for compiled models, or MLP
    neurons) with the highest weight x gradient on ``task``, or reset them to the
    ``revert_to`` model's values, and evaluate every task at each K (schema PRUNE)."""
    pin_threads()  # --threads: the same count gives the same bits
    unit = unit or "weight"
    model = compiled.load_checkpoint(ckpt_path)
    source, reverted = None, None
    if revert_to is not None:
        from wrapcli.core.files import sha256

        base = compiled.load_checkpoint(revert_to)
        mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in base.state_dict().items()}
        if mine != theirs:
            raise WrapError(f"--revert-to {revert_to}: its parameters differ in name or shape from {ckpt_path}'s")
        source = {k: v.detach().clone() for k, v in base.named_parameters()}
        reverted = {"path": str(revert_to), "sha256": sha256(revert_to)}
    operand = ct.operand_of(model.spec, task)
    others = [ct.operand_of(model.spec, t) for t in also]
    units = ct.saliency(model, operand, n, seed, unit)
    if max(ks) > len(units):
        raise UsageError(f"--k {max(ks)} is more than the {len(units)} {unit}s scored")
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    sweep = []
    for k in ks:
        model.load_state_dict(saved)
        ct.zero(model, units[:k], source)
        sweep.append({"k": k, "results": _watch(model, [operand, *others], eval_n, seed=0)})
    model.load_state_dict(saved)
    pruned = [{"layer": layer_of(u["param"], outside=-1), "kind": "neuron" if unit == "neuron" else f"weight:{u['param']}",
               "index": u["index"], "score": u["score"]} for u in units[: max(ks)]]
    n_units = model.spec.n_layers * model.spec.d_mlp if unit == "neuron" else sum(p.numel() for p in model.parameters())
    return prune_result(ckpt_path, task=task, data=None, also=also, kind=unit, iterative=False, n_units=n_units,
                        batches=1, batch_size=n, pruned=pruned, sweep=sweep, written=None, precision="fp32",
                        device="cpu", reverted=reverted, scoring_spurious=None)


def revive(*, ckpt_path, task: str, scratch: bool, lr: str | None, seeds: int, threshold: float | None,
           recipe_args: dict, on_progress=None) -> dict:
    """Reverse fine-tune a compiled counter on ``task`` with the fine-tune's recipe at its
    LR / 10 (``lr`` overrides), ``seeds`` times, beside a fresh initialisation of the same
    architecture (``scratch``); curves and speed-up in the shape of the built-in
    revival's report (schema REVIVE)."""
    import torch

    from wrapcli.analyses.revival import Curve, curves_result, eval_grid, resolve_settings, shifted
    from wrapcli.core.files import sha256

    pin_threads()  # --threads: the same count gives the same bits
    model = compiled.load_checkpoint(ckpt_path)
    operand = ct.operand_of(model.spec, task)
    lr_value, lr_source, threshold, threshold_source = resolve_settings(
        lr=lr, threshold=threshold, seeds=seeds, lineage=checkpoint.read_lineage(ckpt_path), target=task,
        lr_by_name=ct.resolve_lr)
    recipe = ct.Recipe(lr=lr_value, **{k: v for k, v in recipe_args.items() if v is not None})
    grid = eval_grid(recipe.steps)
    seed_list = list(range(seeds))
    eval_ids = compiled.counter_ids(model.spec, recipe.eval_size, np.random.default_rng([0, 3]), None)
    letter = model.spec.input_vocab.index(operand)
    truth = np.array([model.spec.output_values.index(int(c)) for c in (eval_ids[:, 1:] == letter).sum(1)])

    def accuracy(m) -> float:
        with torch.inference_mode():
            return float((m(torch.as_tensor(eval_ids))[:, -1].argmax(-1).numpy() == truth).mean())

    def curve(factory, j) -> list[list[float]]:  # curve j's steps come after those before it
        per_seed = []
        for k, seed in enumerate(seed_list):
            m, points = factory(seed), []
            progress = shifted(on_progress, (j * seeds + k) * recipe.steps)
            ct.train(m, operand, recipe, seed, None, on_eval=lambda step: points.append(accuracy(m)),
                     eval_steps=grid[1:], on_step=lambda step, loss: progress and progress(step, {"loss": loss}))
            per_seed.append(points)
        return per_seed

    def fresh(seed):
        torch.manual_seed(seed)
        return compiled.build(model.spec)  # PyTorch's default initialisation

    curves = [Curve("revived", str(ckpt_path), sha256(ckpt_path),
                    curve(lambda seed: compiled.load_checkpoint(ckpt_path), 0))]
    if scratch:
        curves.append(Curve("scratch", None, None, curve(fresh, 1)))
    models = [c.summary(grid, threshold, recipe.eval_size) for c in curves]
    return {"task": task, **curves_result(threshold, threshold_source, lr_value, lr_source, recipe, seed_list,
                                           grid, models, "cpu")}


def probe(*, ckpt_path, target: str, reference=None, n: int = 2000, seed: int = 0, random_inits: int = 3) -> dict:
    """Linear probes of the count of ``target``'s letter on the residual stream at the
    answer position, after the embedding and after every block, on natural inputs;
    against fresh initialisations of the same architecture and, with ``reference`` (e.g.
    the compiled model), its probes (schema PROBE)."""
    import torch

    from wrapcli.analyses.probing import RANDOM_INIT_SEED, against_baselines, probe_layers, split

    pin_threads()
    if random_inits < 1:
        raise UsageError(f"--random-inits must be >= 1, got {random_inits}")
    if reference:
        check_not_itself(ckpt_path, reference, "--reference")
    model = compiled.load_checkpoint(ckpt_path)
    operand = ct.operand_of(model.spec, target)
    ref = compiled.load_checkpoint(reference) if reference else None
    if ref is not None and ref.spec != model.spec:
        raise UsageError(f"reference {reference}: another compiled architecture than {ckpt_path}")
    ids = compiled.counter_ids(model.spec, n, np.random.default_rng([seed, 5]), None)
    labels = np.array([str(c) for c in (ids[:, 1:] == model.spec.input_vocab.index(operand)).sum(1)])
    train, test = split(labels, seed)
    init_seeds = [RANDOM_INIT_SEED + seed * random_inits + i for i in range(random_inits)]

    def curve(m):
        return probe_layers(ct.residual_features(m, ids), labels, train, test)

    def fresh(s):
        torch.manual_seed(s)
        return compiled.build(model.spec).eval()  # PyTorch's default initialisation

    layers = against_baselines(curve(model), [curve(fresh(s)) for s in init_seeds],
                               curve(ref) if ref is not None else None)
    return probe_result(ckpt_path, what=target, data=None, labels=labels, split_=(train, test, False),
                        init_seeds=init_seeds, reference=reference, layers=layers, device="cpu",
                        target_task=target, prompt_task=target)


def compare(*, paths, tasks=(), reports=(), th=None, n: int = 512) -> dict:
    """compare's audit for compiled counters (the first is the base): the weight diff,
    each count task's accuracy on natural inputs with its interval, linear CKA of the
    residual stream at the answer position, the evidence reports and the verdicts, in
    the built-in audit's report shape (schema COMPARE)."""
    from wrapcli.analyses.audit import cka_by_layer, evidence_task, verdicts_by_checkpoint
    from wrapcli.analyses.weightdiff import compare_weights
    from wrapcli.core.files import sha256
    from wrapcli.runs.evidence import load_reports
    from wrapcli.verdicts.rules import Thresholds

    pin_threads()
    th = th or Thresholds()
    if len(paths) < 2:
        raise UsageError("compare needs at least two checkpoints (the first is the base)")
    names = [str(p) for p in paths]
    models = [compiled.load_checkpoint(p) for p in paths]
    for name, m in zip(names[1:], models[1:]):
        if m.spec != models[0].spec:
            raise UsageError(f"{name}: another compiled architecture than the base {names[0]}")
    operands = {}
    for task in tasks:
        if task in operands:
            raise UsageError(f"--task {task} is given twice")
        operands[task] = ct.operand_of(models[0].spec, task)
    weights = [compare_weights(paths[0], p) for p in paths[1:]]
    shas = {name: sha256(path) for name, path in zip(names, paths)}
    evidence_by = load_reports(reports, shas)
    canon = {task: {} for task in operands}
    for rep in (r for reps in evidence_by.values() for r in reps):
        evidence_task(rep, canon)
    behaviour = {}
    for task, op in operands.items():
        behaviour[task] = {}
        for name, m in zip(names, models):
            r = compiled.evaluate(m, n, seed=0, operand=op)[task]["natural"]
            behaviour[task][name] = {"accuracy": r["accuracy"], "n": r["n"], "ci95": r["ci95"], "metric": "accuracy",
                                     "majority_baseline": r["majority_baseline"]}
    representations = {}
    if operands:
        ids = compiled.counter_ids(models[0].spec, n, np.random.default_rng([0, 6]), None)
        base_features = ct.residual_features(models[0], ids)
        for name, m in zip(names[1:], models[1:]):
            representations[name] = cka_by_layer(base_features, ct.residual_features(m, ids))
    verdict_by = verdicts_by_checkpoint(names, canon, evidence_by, behaviour, th)
    return {"checkpoints": [{"path": n_, "sha256": shas[n_]} for n_ in names], "base": names[0],
            "thresholds": th.to_dict(), "weights": weights, "behaviour": behaviour, "depth": {}, "views": [],
            "representations": representations, "evidence": {k: [r["path"] for r in v] for k, v in evidence_by.items()},
            "verdicts": verdict_by, "device": "cpu"}


def attention(model, n: int, seed: int) -> dict:
    """Attention from the answer position per setting (natural, C_Te=0, C_Te=1)."""
    out = {}
    for setting in compiled.SETTINGS:
        rng = np.random.default_rng([seed, 4, compiled.SETTINGS.index(setting)])
        spurious = {"natural": None, "C_Te=0": 0.0, "C_Te=1": 1.0}[setting]
        out[setting] = ct.attention_at_answer(model, compiled.counter_ids(model.spec, n, rng, spurious))
    return out

