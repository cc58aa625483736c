"""`wrapcli probe`: load the model (and its reference), make the labelled prompts (built-in
task or the user's text/label records), fit the probes per layer on it and on random-init
baselines (wrapcli/analyses/probing.py), and assemble the report's results (schema PROBE)."""

from __future__ import annotations

import numpy as np

from wrapcli.analyses.probing import RANDOM_INIT_SEED, against_baselines, attention_summary, probe_layers, split
from wrapcli.core.errors import UsageError
from wrapcli.models.adapters import last_positions, layer_features, token_chunks
from wrapcli.models.build import context_length
from wrapcli.models.lineage import check_not_itself, check_same_shapes
from wrapcli.runs.results import probe_result

PROBE_STREAM = 8  # training-stream id of the probe data: unseen by train/finetune


# Random-init baselines: how well the same probe reads the target from untrained networks
# of the same config. Counting is nearly linear in a random transformer's residual stream
# (attention averages token embeddings), so this, not the majority class, is the bar, and
# one random draw can fall low by chance: the baseline is the best of several inits.
RANDOM_INITS = 3




def probe(*, ckpt_path, target=None, prompt=None, data=None, position="last", n=2000,
          reference=None, seed=0, device="cpu", attention=True, random_inits=RANDOM_INITS,
          precision="fp32", placement=None, lens=None) -> dict:
    """Probe every layer of ``ckpt_path`` (and the baselines); the report's results.
    ``precision`` bf16 (fp16) loads and keeps every model's weights in bf16 (fp16) (the features are
    taken to float32 before the probes are fitted). ``placement`` (wrapcli/core/runtime.py)
    dispatches the checkpoint and its reference over devices, CPU and disk; the random-init
    baselines are built whole, one at a time, on the CPU. ``lens`` (prompt/answer or
    multiple-choice records) adds the logit lens of the model and its reference; on a
    Hugging Face directory without --data, the lens alone runs (no probes)."""
    from wrapcli.models import checkpoint

    if checkpoint.is_compiled(ckpt_path):
        return probe_compiled(ckpt_path, target, reference, n, seed, random_inits,
                              given=dict(data=data, prompt=prompt, lens=lens, placement=placement,
                                         position=position != "last", precision=precision != "fp32"))
    if random_inits < 1:
        raise UsageError(f"--random-inits must be >= 1, got {random_inits}")
    from wrapcli.core.runtime import DTYPES

    dtype = DTYPES[precision]
    if reference:
        check_not_itself(ckpt_path, reference, "--reference")
    ck = checkpoint.load(ckpt_path, dtype=dtype, device=device, placement=placement)
    check_probe_memory(ck.config, n)
    ref = checkpoint.load(reference, dtype=dtype, device=device, placement=placement) if reference else None
    if ref is not None:

        check_same_shapes(ck, ref, str(ckpt_path), f"reference {reference}")
    lens_result = logit_lens(lens, ckpt_path, ck, ref, device) if lens is not None else None
    if lens_result is not None and data is None and target is None and ck.path.is_dir():
        return probe_result(ckpt_path, what="the logit lens alone", data=None, labels=np.array([]), split_=None,
                            init_seeds=[], reference=reference, layers=[], device=device, lens=lens_result)
    groups, tokens, target_task, prompt_task = None, None, None, None
    if data is not None:
        chunks, pick, labels, groups, what = user_probe_data(data, ckpt_path, ck.model, position)
    else:
        tokens, labels, target_task, prompt_task = task_probe_data(ck, target, prompt, n, seed)
        what = f"{target_task} (on {prompt_task} prompts)" if prompt_task != target_task else target_task
        chunks = lambda: token_chunks(tokens)  # noqa: E731
        pick = lambda h, mask: h[:, -1]  # noqa: E731  rows end at <ans>
    train, test = split(labels, seed, groups=groups)
    init_seeds = [RANDOM_INIT_SEED + seed * random_inits + i for i in range(random_inits)]

    def curve(model, on=device):
        return probe_layers(layer_features(model, chunks(), pick, on), labels, train, test)

    init_device = "cpu" if placement is not None else device  # a dispatched model's baselines stay off the devices
    randoms = [curve(model, init_device) for model in random_inits_of(ck.config, init_seeds, init_device, dtype)]
    layers = against_baselines(curve(ck.model), randoms, curve(ref.model) if ref is not None else None)
    result = probe_result(ckpt_path, what=what, data=data, labels=labels, split_=(train, test, groups is not None),
                          init_seeds=init_seeds, reference=reference, layers=layers, device=device, lens=lens_result,
                          target_task=target_task, prompt_task=prompt_task,
                          placement=placement and {**placement, "modules": checkpoint.placed_on(ck.model)})
    if attention and tokens is not None:
        result["attention"] = {name: attention_summary(m, tokens[:256], device)
                               for name, m in (("model", ck.model), ("reference", ref and ref.model)) if m is not None}
    return result


def random_inits_of(config, seeds, device, dtype):
    """Fresh initialisations of ``config``, one at a time: each is dropped once its
    features are probed."""
    import torch

    from wrapcli.models.build import build_model

    for s in seeds:
        yield build_model(config, s).to(device=device, dtype=getattr(torch, dtype)).eval()


def probe_compiled(ckpt_path, target, reference, n, seed, random_inits, given: dict) -> dict:
    """A compiled (Tracr) counter's probes, after the options it cannot take are refused."""
    from wrapcli.runs import compiled as compiled_runs

    if given["placement"] is not None:
        raise UsageError("--device-map is for Hugging Face directories, not compiled (Tracr) models")
    if any(v for k, v in given.items() if k != "placement"):
        raise UsageError("a compiled (Tracr) counter is probed on --target count:X in fp32, without --data, "
                         "--prompt, --lens, --position or --precision")
    if target is None:
        raise UsageError("give --target count:X for a compiled counter")
    return compiled_runs.probe(ckpt_path=ckpt_path, target=target, reference=reference, n=n, seed=seed,
                               random_inits=random_inits)


def logit_lens(path, ckpt_path, ck, ref, device) -> dict:
    """The logit lens (wrapcli/analyses/lens.py) of the model and its reference on the
    records of ``path``, with each record's reading per residual-stream point (what
    compare holds against a floor)."""
    from wrapcli.analyses.lens import lens_readings, lens_table
    from wrapcli.models.adapters import Adapter
    from wrapcli.textdata.userdata import IGNORE, text_data

    td = text_data(path, ckpt_path, ck.model, 0, kinds=("prompt", "choice"))
    mc = td.choices is not None
    out = {"records": str(path), "multiple_choice": mc}
    for name, model in (("model", ck.model), ("reference", ref.model if ref is not None else None)):
        if model is None:
            out[name] = None
            continue
        readings = lens_readings(Adapter(model), td, device, ignore=IGNORE)
        out[name] = [{**row, "correct": [r["correct"] for r in recs]}
                     for row, recs in zip(lens_table(readings, mc), readings)]
    return out


def check_probe_memory(config, n: int) -> None:
    """Refuse an ``--eval-size`` whose features would not fit in memory, before making any: one
    float32 row per example per layer (and the embedding), kept while the probes fit,
    with about as much again for the classifier's copies."""
    from wrapcli.core.runtime import check_memory

    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 1)
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 1)
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 1024
    # the features, and the token array and texts built first (a built-in task's strings)
    need = 2 * 4 * n * (layers + 1) * width + n * (16 * min(positions, 1024) + 512)
    check_memory("--eval-size", n, need, "the probe's features")


def task_probe_data(ck, target, prompt, n, seed):
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


def user_probe_data(path, model_dir, model, position):
    from wrapcli.textdata.userdata import load_tokenizer, pad_id, read_labelled, right_pad

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
