"""Linear probes on the residual stream (docs/protocol.md "Probing"; Jain et al. 2024, Sec. 5).

For every residual-stream point (``hook_embed`` = embedding output, layer -1, and
``blocks.{l}.hook_resid_post`` = block l's output) take the residual stream
at the answer position over a fresh evaluation set and fit a logistic-regression probe
(scikit-learn, standardised features, held-out split) for the target: the count of an
operand in the window, or the index / token for those families. If a fine-tuned model
no longer answers count:a yet its probes still decode count(a), the capability is
hidden, not gone. Baselines: majority class, the same probe on a randomly initialised
model of the same config, and optionally a reference (e.g. the pretrained) model.
Running a probe over a checkpoint (data, baselines, report) is wrapcli/runs/probe.py.
"""

from __future__ import annotations

import numpy as np

from wrapcli.core.errors import WrapError
from wrapcli.core.stats import family_confidence, paired_difference, proportion
from wrapcli.models.adapters import resid_layers

# The probe is sklearn's L2-regularised multinomial logistic regression (C=1). Newton-CG
# reaches its optimum in about 20 iterations on residual-stream features; lbfgs needed
# 400-800 and 20-40x the time (5-8 s per layer on the CPU preset, 2000 examples).
# Same convex objective, same optimum: tests/integration/test_probing.py checks against lbfgs.
SOLVER = "newton-cg"


RANDOM_INIT_SEED = 10_000  # random-init baselines use seeds RANDOM_INIT_SEED + i: never a trained model's own seed

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

def against_baselines(rows: list[dict], randoms: list[list[dict]], refs: list[dict] | None = None) -> list[dict]:
    """Each layer's probe (``probe_layers`` rows) with its bar: the better of the best
    random-init model and the majority class, on the same held-out rows, and the margin
    over it with a paired bootstrap interval (and a Bonferroni-widened one over layers);
    with ``refs``, the reference model's probe at the same layer."""
    family = family_confidence(len(rows))
    layers = []
    for i, row in enumerate(rows):
        best = max((r[i] for r in randoms), key=lambda r: r["accuracy"])
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
    return layers


def class_balance(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


def _public(row: dict, keys=None) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_") and (keys is None or k in keys)}


def attention_summary(model, prompts: np.ndarray, device="cpu") -> list[dict]:
    """For each layer and head: mean share of attention from ``<ans>`` onto the text
    tokens equal to a, b and c (the paper's attention-map analysis). ``prompts`` (B, T)
    end at ``<ans>``, as the probe's do; the text is positions 5 .. T-3 (tasks/sequences.py)."""
    import torch

    from wrapcli.core.kernels import eager_attention
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


