"""Linear probes on the residual stream (PROTOCOL.md "Probing"; Jain et al. 2024, Sec. 5).

For every layer (B0 = embedding output, Bl = block l's output) take the residual stream
at the answer position over a fresh evaluation set and fit a logistic-regression probe
(scikit-learn, standardised features, held-out split) for the target: the count of an
operand in the window, or the index / token for those families. If a fine-tuned model
no longer answers count:a yet its probes still decode count(a), the capability is
hidden, not gone. Baselines: majority class, the same probe on a randomly initialised
model of the same config, and optionally a reference (e.g. the pretrained) model.
"""

from __future__ import annotations

import numpy as np

from wrapcli.adapters import Adapter
from wrapcli.errors import WrapError

PROBE_STREAM = 8  # training-stream id of the probe data: unseen by train/finetune
# The probe is sklearn's L2-regularised multinomial logistic regression (C=1). Newton-CG
# reaches its optimum in about 20 iterations on residual-stream features; lbfgs needed
# 400-800 and 20-40x the time (5-8 s per layer on the CPU preset, 2000 examples).
# Same convex objective, same optimum: tests/test_probing.py checks against lbfgs.
SOLVER = "newton-cg"


def fit_probe(features: np.ndarray, labels: np.ndarray, seed: int = 0, test_frac: float = 0.25) -> dict:
    """Held-out accuracy of a logistic-regression probe, and the majority baseline of the
    same held-out split. ``features`` (n, d); ``labels`` (n,) of any hashable class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise WrapError(f"probe labels have a single class ({classes[0]!r}): nothing to decode")
    stratify = labels if counts.min() >= 2 else None
    x_tr, x_te, y_tr, y_te = train_test_split(
        features.astype(np.float32), labels, test_size=test_frac, random_state=seed, stratify=stratify
    )
    probe = make_pipeline(StandardScaler(), LogisticRegression(solver=SOLVER, max_iter=1000))
    probe.fit(x_tr, y_tr)
    values, freq = np.unique(y_tr, return_counts=True)
    majority = values[np.argmax(freq)]  # chosen on the training split, scored on held-out
    return {
        "accuracy": float(probe.score(x_te, y_te)),
        "majority_baseline": float(np.mean(y_te == majority)),
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_te)),
    }


def layer_features(model, chunks, pick, device="cpu") -> list[np.ndarray]:
    """Per layer B0..Bn, one vector per example: a list of (n, d) float16 arrays.

    ``chunks`` yields ``(input_ids, attention_mask or None)`` batches; ``pick(hidden, mask)``
    reduces a (B, T, d) layer to (B, d) (the answer position, the last token, the mean of
    the last K). Memory: one chunk's activations plus the float16 results."""
    import torch

    adapter = Adapter(model)
    per_layer: list[list[np.ndarray]] = [[] for _ in range(adapter.n_layers + 1)]
    for ids, mask in chunks:
        ids = torch.as_tensor(ids, device=device)
        mask = None if mask is None else torch.as_tensor(mask, device=device)
        for layer, h in enumerate(adapter.residual_stream(ids, mask)):
            per_layer[layer].append(pick(h, mask).float().cpu().numpy().astype(np.float16))
    return [np.concatenate(x) for x in per_layer]


def token_chunks(tokens: np.ndarray, chunk: int = 256):
    for i in range(0, len(tokens), chunk):
        yield tokens[i : i + chunk], None


def last_positions(k: int = 1):
    """Mean of the last ``k`` real (unpadded, right-padded) tokens; k=1 is the last token."""

    def pick(h, mask):
        import torch

        if mask is None:
            return h[:, -k:].mean(1)
        lengths = mask.sum(1)  # (B,)
        idx = (lengths[:, None] - 1 - torch.arange(k, device=h.device)[None]).clamp(min=0)  # (B, k)
        return torch.gather(h, 1, idx[..., None].expand(-1, -1, h.shape[-1])).mean(1)

    return pick


def probe_layers(features: list[np.ndarray], labels: np.ndarray, seed: int = 0) -> list[dict]:
    return [{"layer": f"B{l}", **fit_probe(f, labels, seed)} for l, f in enumerate(features)]


def attention_summary(model, tokens: np.ndarray, device="cpu") -> list[dict]:
    """For each layer and head: mean share of attention from the ``<ans>`` position onto
    text tokens equal to a, b and c (the paper's attention-map analysis)."""
    import torch

    from wrapcli.tasks import vocab

    ans = tokens.shape[1] - 3
    model.set_attn_implementation("eager")  # sdpa does not return attention weights
    try:
        with torch.inference_mode():
            x = torch.as_tensor(tokens[:, : ans + 1], device=device)
            attentions = model(input_ids=x, output_attentions=True).attentions  # n_layers x (B, H, T, T)
    finally:
        model.set_attn_implementation("sdpa")
    out = []
    for layer, att in enumerate(attentions):
        row = att[:, :, -1].float().cpu().numpy()  # (B, H, T): from <ans>
        for head in range(row.shape[1]):
            shares = {t: float((row[:, head] * (tokens[:, : ans + 1] == vocab.ID[t])).sum(1).mean())
                      for t in vocab.TERMINALS}
            out.append({"layer": layer, "head": head, **shares})
    return out


def probe(*, ckpt_path, target=None, prompt=None, data=None, position="last", n=2000,
          reference=None, seed=0, device="cpu", attention=True) -> dict:
    """Probe every layer of ``ckpt_path`` (and the baselines); the report's results."""
    from wrapcli import checkpoint
    from wrapcli.models import build_model

    ck = checkpoint.load(ckpt_path, device=device)
    ref = checkpoint.load(reference, device=device) if reference else None
    if ref is not None:
        from wrapcli.revival import check_same_shapes

        check_same_shapes(ck, ref, str(ckpt_path), str(reference))
    if data is not None:
        chunks, pick, labels, what = _user_probe_data(data, ckpt_path, ck.model, position)
        tokens = None
    else:
        tokens, labels, what = _task_probe_data(ck, target, prompt, n, seed)
        chunks = lambda: token_chunks(tokens)  # noqa: E731
        pick = lambda h, mask: h[:, -1]  # noqa: E731  rows end at <ans>
    models = {"model": ck.model, "random_init": build_model(ck.config, seed).to(device).eval()}
    if ref is not None:
        models["reference"] = ref.model
    curves = {name: probe_layers(layer_features(m, chunks(), pick, device), labels, seed)
              for name, m in models.items()}
    layers = []
    for i, row in enumerate(curves["model"]):
        entry = dict(row)
        for name in models:
            if name != "model":
                entry[name] = curves[name][i]["accuracy"]
        layers.append(entry)
    result = {
        "checkpoint": str(ckpt_path),
        "target": what,
        "n": int(len(labels)),
        "n_classes": int(len(np.unique(labels))),
        "reference": str(reference) if reference else None,
        "layers": layers,
        "device": device,
    }
    if attention and tokens is not None:
        result["attention"] = {name: attention_summary(m, tokens[:256], device)
                               for name, m in models.items() if name != "random_init"}
    return result


def _task_probe_data(ck, target, prompt, n, seed):
    """Prompts of ``prompt`` (default: the target's own task) on fresh grammar strings,
    labelled with the target's answer computed on the same texts."""
    from wrapcli.tasks import vocab
    from wrapcli.tasks.checks import task_for
    from wrapcli.tasks.sequences import answers, make_batch

    if target is None:
        raise WrapError("give --target (built-in task) or --data (text/label JSONL)")
    t_spec = task_for(ck, target)
    p_spec = task_for(ck, prompt or target)
    for name, spec in (("--target", t_spec), ("--prompt", p_spec)):
        if len(spec.eval_components()) != 1:
            raise WrapError(f"{name} needs one task with a fixed operand (e.g. count:a)")
    comp = t_spec.eval_components()[0]
    batch = make_batch(p_spec.replace(components=(p_spec.eval_components()[0],), seed=seed),
                       np.random.default_rng([seed, PROBE_STREAM]), n)
    texts = batch.tokens[:, 5 : 5 + t_spec.text_len] - vocab.TERMINAL_BASE
    labels = answers(t_spec, np.full(n, comp.family), np.full(n, comp.answered or ""), texts)
    what = f"{comp} (on {p_spec.eval_components()[0]} prompts)" if prompt else str(comp)
    return batch.tokens[:, : batch.answer_pos + 1], np.array(vocab.TOKENS)[labels], what


def _user_probe_data(path, model_dir, model, position):
    from wrapcli.userdata import load_tokenizer, read_labelled

    texts, labels = read_labelled(path)
    if position == "last":
        k = 1
    elif position.startswith("mean-last-"):
        try:
            k = int(position.split("-")[-1])
        except ValueError:
            raise WrapError(f"--position takes last or mean-last-K, got {position!r}") from None
    else:
        raise WrapError(f"--position takes last or mean-last-K, got {position!r}")
    tok = load_tokenizer(model_dir)
    max_len = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 1024)
    encoded = [tok(t, add_special_tokens=True)["input_ids"][-max_len:] for t in texts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def chunks(size=32):
        for i in range(0, len(encoded), size):
            part = encoded[i : i + size]
            width = max(map(len, part))
            ids = np.full((len(part), width), pad, dtype=np.int64)
            mask = np.zeros((len(part), width), dtype=np.int64)
            for r, e in enumerate(part):
                ids[r, : len(e)] = e
                mask[r, : len(e)] = 1
            yield ids, mask

    return chunks, last_positions(k), np.array(labels), f"label of {path} ({position})"
