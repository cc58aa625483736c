"""Linear probes on the residual stream (PROTOCOL.md "Probing"; Jain et al. 2024, Sec. 5).

For every residual-stream point (``hook_embed`` = embedding output, layer -1, and
``blocks.{l}.hook_resid_post`` = block l's output) take the residual stream
at the answer position over a fresh evaluation set and fit a logistic-regression probe
(scikit-learn, standardised features, held-out split) for the target: the count of an
operand in the window, or the index / token for those families. If a fine-tuned model
no longer answers count:a yet its probes still decode count(a), the capability is
hidden, not gone. Baselines: majority class, the same probe on a randomly initialised
model of the same config, and optionally a reference (e.g. the pretrained) model.
"""

from __future__ import annotations

import numpy as np

from wrapcli.adapters import last_positions, layer_features, resid_layers, token_chunks
from wrapcli.errors import UsageError, WrapError
from wrapcli.models import context_length
from wrapcli.stats import family_confidence, paired_difference, proportion

PROBE_STREAM = 8  # training-stream id of the probe data: unseen by train/finetune
# Random-init baselines: how well the same probe reads the target from untrained networks
# of the same config. Counting is nearly linear in a random transformer's residual stream
# (attention averages token embeddings), so this, not the majority class, is the bar, and
# one random draw can fall low by chance: the baseline is the best of several inits.
RANDOM_INITS = 3
RANDOM_INIT_SEED = 10_000  # init seeds RANDOM_INIT_SEED + i: never a trained model's own seed
# The probe is sklearn's L2-regularised multinomial logistic regression (C=1). Newton-CG
# reaches its optimum in about 20 iterations on residual-stream features; lbfgs needed
# 400-800 and 20-40x the time (5-8 s per layer on the CPU preset, 2000 examples).
# Same convex objective, same optimum: tests/integration/test_probing.py checks against lbfgs.
SOLVER = "newton-cg"


def split(labels: np.ndarray, seed: int = 0, test_frac: float = 0.25, groups=None):
    """Held-out split shared by every model a probe report compares: ``(train, test)``
    index arrays. With ``groups`` every group stays on one side (paired records, such as
    one prompt with a true and a false completion, must not straddle the split, or a probe
    can score below chance by memorising the pair); otherwise stratified by label."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    idx = np.arange(len(labels))
    if groups is not None:
        groups = np.asarray(groups)
        if len(np.unique(groups)) < 2:
            raise WrapError("probe groups: all records are in one group, so nothing can be held out")
        train, test = next(GroupShuffleSplit(1, test_size=test_frac, random_state=seed).split(idx, labels, groups))
        return train, test
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 else None
    return train_test_split(idx, test_size=test_frac, random_state=seed, stratify=stratify)


def fit_probe(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> dict:
    """Held-out accuracy (with its count and Wilson interval) of a logistic-regression
    probe, and the majority baseline of the same held-out rows. ``features`` (n, d_model);
    ``labels`` (n,) of any hashable class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_tr, y_te = labels[train], labels[test]
    if len(np.unique(y_tr)) < 2:
        raise WrapError(f"probe training split has a single class ({y_tr[0]!r}): nothing to decode")
    probe = make_pipeline(StandardScaler(), LogisticRegression(solver=SOLVER, max_iter=1000))
    probe.fit(features[train].astype(np.float32), y_tr)
    hits = probe.predict(features[test].astype(np.float32)) == y_te
    values, freq = np.unique(y_tr, return_counts=True)
    majority = values[np.argmax(freq)]  # chosen on the training split, scored on held-out
    return {
        **proportion(int(hits.sum()), len(y_te)),
        "majority_baseline": float(np.mean(y_te == majority)),
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_te)),
        "_hits": hits,  # per held-out example, for paired intervals; not reported
        "_majority_hits": y_te == majority,
    }


def probe_layers(features: list[np.ndarray], labels: np.ndarray, train, test) -> list[dict]:
    """One probe per residual-stream point (``resid_layers`` order)."""
    return [{"layer": layer, "hook": hook, **fit_probe(f, labels, train, test)}
            for (layer, hook), f in zip(resid_layers(len(features) - 1), features)]


def attention_summary(model, prompts: np.ndarray, device="cpu") -> list[dict]:
    """For each layer and head: mean share of attention from ``<ans>`` onto the text
    tokens equal to a, b and c (the paper's attention-map analysis). ``prompts`` (B, T)
    end at ``<ans>``, as the probe's do; the text is positions 5 .. T-3 (tasks/sequences.py)."""
    import torch

    from wrapcli.kernels import eager_attention
    from wrapcli.tasks import vocab
    from wrapcli.tasks.sequences import TEXT_START

    if not (prompts[:, -1] == vocab.ANS).all():
        raise WrapError("attention_summary needs prompts that end at <ans>")
    text = np.zeros(prompts.shape, dtype=bool)
    text[:, TEXT_START : prompts.shape[1] - 2] = True  # <eot> and <ans> close the prompt
    with eager_attention(model), torch.inference_mode():  # sdpa does not return attention weights
        x = torch.as_tensor(prompts, device=device)
        attentions = model(input_ids=x, output_attentions=True).attentions  # n_layers x (B, n_heads, T, T)
    out = []
    for layer, att in enumerate(attentions):
        row = att[:, :, -1].float().cpu().numpy()  # (B, n_heads, T): from <ans>
        for head in range(row.shape[1]):
            shares = {t: float((row[:, head] * (text & (prompts == vocab.ID[t]))).sum(1).mean())
                      for t in vocab.TERMINALS}
            out.append({"layer": layer, "head": head, **shares})
    return out


def probe(*, ckpt_path, target=None, prompt=None, data=None, position="last", n=2000,
          reference=None, seed=0, device="cpu", attention=True, random_inits=RANDOM_INITS) -> dict:
    """Probe every layer of ``ckpt_path`` (and the baselines); the report's results."""
    from wrapcli import checkpoint
    from wrapcli.models import build_model

    if random_inits < 1:
        raise UsageError(f"--random-inits must be >= 1, got {random_inits}")
    ck = checkpoint.load(ckpt_path, device=device)
    check_probe_memory(ck.config, n)
    ref = checkpoint.load(reference, device=device) if reference else None
    if ref is not None:
        from wrapcli.checkpoint import check_same_shapes

        check_same_shapes(ck, ref, str(ckpt_path), f"reference {reference}")
    groups = None
    if data is not None:
        chunks, pick, labels, groups, what = _user_probe_data(data, ckpt_path, ck.model, position)
        tokens, target_task, prompt_task = None, None, None
    else:
        tokens, labels, target_task, prompt_task = _task_probe_data(ck, target, prompt, n, seed)
        what = f"{target_task} (on {prompt_task} prompts)" if prompt_task != target_task else target_task
        chunks = lambda: token_chunks(tokens)  # noqa: E731
        pick = lambda h, mask: h[:, -1]  # noqa: E731  rows end at <ans>
    train, test = split(labels, seed, groups=groups)
    init_seeds = [RANDOM_INIT_SEED + seed * random_inits + i for i in range(random_inits)]

    def curve(model):
        return probe_layers(layer_features(model, chunks(), pick, device), labels, train, test)

    rows = curve(ck.model)
    randoms = [curve(build_model(ck.config, s).to(device).eval()) for s in init_seeds]
    refs = curve(ref.model) if ref is not None else None
    family = family_confidence(len(rows))
    layers = []
    for i, row in enumerate(rows):
        best = max((r[i] for r in randoms), key=lambda r: r["accuracy"])
        # the bar: the better of the best random init and the majority class, on the same rows
        name, base = (("random_init", best["_hits"]) if best["accuracy"] >= row["majority_baseline"]
                      else ("majority", row["_majority_hits"]))
        value, lo, hi = paired_difference(row["_hits"], base)
        _, flo, fhi = paired_difference(row["_hits"], base, family)
        entry = {
            **_public(row),
            "random_init": {**_public(best, ("accuracy", "n", "ci95")), "per_init": [r[i]["accuracy"] for r in randoms]},
            "margin": {"baseline": name, "value": value, "ci95": [lo, hi],
                       "ci_bonferroni": [flo, fhi], "confidence_bonferroni": family},
        }
        if refs is not None:
            entry["reference"] = _public(refs[i], ("accuracy", "n", "ci95"))
        layers.append(entry)
    result = {
        "checkpoint": str(ckpt_path),
        "target": what,
        "target_task": target_task,
        "prompt_task": prompt_task,
        "data": str(data) if data else None,
        "n": int(len(labels)),
        "n_classes": int(len(np.unique(labels))),
        "split": {
            "grouped": groups is not None,
            "class_balance": {side: _balance(labels[ix]) for side, ix in (("train", train), ("test", test))},
        },
        "random_init_seeds": init_seeds,
        "reference": str(reference) if reference else None,
        "layers": layers,
        "device": device,
    }
    if attention and tokens is not None:
        result["attention"] = {name: attention_summary(m, tokens[:256], device)
                               for name, m in (("model", ck.model), ("reference", ref and ref.model)) if m is not None}
    return result


def check_probe_memory(config, n: int) -> None:
    """Refuse an ``--n`` whose features would not fit in memory, before making any: one
    float32 row per example per layer (and the embedding), kept while the probes fit,
    with about as much again for the classifier's copies."""
    from wrapcli.runtime import available_memory

    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 1)
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 1)
    need = 2 * 4 * n * (layers + 1) * width
    free = available_memory()
    if free is not None and need > free:
        raise UsageError(f"--n {n}: the probe's features need about {need / 2**30:.1f} GiB, but "
                         f"{free / 2**30:.1f} GiB of memory is available; use a smaller --n")


def _public(row: dict, keys=None) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_") and (keys is None or k in keys)}


def _balance(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


def _task_probe_data(ck, target, prompt, n, seed):
    """Prompts of ``prompt`` (default: the target's own task) on fresh grammar strings,
    labelled with the target's answer computed on the same texts."""
    from wrapcli.tasks import vocab
    from wrapcli.tasks.checks import single_component, task_for
    from wrapcli.tasks.sequences import TEXT_START, answers, make_batch

    if target is None:
        raise UsageError("give --target (built-in task) or --data (text/label JSONL)")
    t_spec = task_for(ck, target)
    p_spec = task_for(ck, prompt or target)
    comp = single_component(t_spec, "--target", target)
    batch = make_batch(p_spec.replace(components=(single_component(p_spec, "--prompt", prompt or target),), seed=seed),
                       np.random.default_rng([seed, PROBE_STREAM]), n)
    texts = batch.tokens[:, TEXT_START : TEXT_START + t_spec.text_len] - vocab.TERMINAL_BASE
    labels = answers(t_spec, np.full(n, comp.family), np.full(n, comp.answered or ""), texts)
    return batch.tokens[:, : batch.answer_pos + 1], np.array(vocab.TOKENS)[labels], str(comp), str(p_spec.eval_components()[0])


def _user_probe_data(path, model_dir, model, position):
    from wrapcli.userdata import load_tokenizer, pad_id, read_labelled, right_pad

    texts, labels, groups = read_labelled(path)
    if position == "last":
        k = 1
    elif position.startswith("mean-last-") and position[len("mean-last-"):].isdigit():
        k = int(position[len("mean-last-"):])
        if k < 1:
            raise UsageError(f"--position mean-last-K needs K >= 1, got {position!r}")
    else:
        raise UsageError(f"--position takes last or mean-last-K, got {position!r}")
    tok = load_tokenizer(model_dir)
    max_len = context_length(model.config) or 1024
    encoded = [tok(t, add_special_tokens=True)["input_ids"][-max_len:] for t in texts]

    def chunks(size=32):
        for i in range(0, len(encoded), size):
            yield right_pad(encoded[i : i + size], pad_id(tok))

    return chunks, last_positions(k), np.array(labels), groups, f"label of {path} ({position})"
