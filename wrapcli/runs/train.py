"""`wrapcli train` and `wrapcli finetune`: resolve the preset and flags into a task spec,
a model and a training config, run the loop (wrapcli/training/loop.py), evaluate, and save
with lineage."""

from __future__ import annotations

from pathlib import Path

from wrapcli.core.distributed import is_main, process_group, world
from wrapcli.core.errors import UsageError, WrapError
from wrapcli.core.files import check_replaceable, check_writable
from wrapcli.core.runtime import resolve_device, resolve_precision
from wrapcli.models import checkpoint
from wrapcli.models.build import ModelShape, build_config, build_model, enable_checkpointing
from wrapcli.models.lineage import lineage_entry
from wrapcli.tasks import vocab
from wrapcli.tasks.evaluation import EVAL_SEED, evaluate
from wrapcli.tasks.sequences import seq_len
from wrapcli.tasks.spec import TaskSpec, parse_components, parse_prior
from wrapcli.textdata.userdata import pad_id
from wrapcli.training import presets
from wrapcli.training.batches import TaskData
from wrapcli.training.loop import TrainConfig, train
from wrapcli.training.presets import Preset, resolve_lr


def _check_out(out) -> None:
    if str(out) == "-":
        raise WrapError("a checkpoint cannot be written to stdout; give a file name")
    if not str(out).endswith(".safetensors"):
        raise UsageError(f"checkpoint name must end in .safetensors: {out}")
    check_writable(out)  # fail before training, not after


def _pick(value, default):
    return default if value is None else value


def planned_steps(kind: str, preset: str, steps: int | None, parent=None) -> int:
    """How many optimizer steps a train or finetune run takes (the progress bar's length):
    ``--steps``, else the preset's (a compiled parent: the paper's SGD recipe)."""
    if steps:
        return steps
    if parent is not None and checkpoint.is_compiled(parent):
        from wrapcli.compiled.training import Recipe

        return Recipe.steps
    p = presets.get(preset)
    return p.steps if kind == "train" else p.ft_steps


def takes_sgd_recipe(parent) -> bool:
    """Whether fine-tuning ``parent`` follows the paper's SGD recipe for compiled (Tracr)
    models (wrapcli/compiled/training.py) instead of the preset's AdamW run."""
    return checkpoint.is_compiled(parent)


def _preset(preset: str | Preset) -> Preset:
    return presets.get(preset) if isinstance(preset, str) else preset


def state_path(out: str) -> Path:
    """Where a run writing ``out`` keeps its resumable state."""
    return Path(f"{out}.state")


def pretrain(*, out, task, preset: str | Preset, prior=None, text_len=None, window=None, k=6,
             offset=40, arch=None, layers=None, heads=None, d_model=None, steps=None,
             batch_size=None, lr=None, loss=None, eval_every=None, eval_size=None,
             resume=False, save_every=None, seed=0, device="auto", precision="auto",
             on_step=None) -> dict:
    """Pretrain a fresh model; writes the checkpoint ``out`` and returns the results."""
    preset = _preset(preset)  # a preset's name or the preset
    _check_out(out)
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
        precision=resolve_precision(precision, device),
    )
    model = build_model(build_config(shape, vocab.VOCAB_SIZE, seq_len(spec.text_len)), seed)
    log = train(model, spec, cfg, device=device, state_path=state_path(out), resume=resume,
                save_every=save_every, on_step=on_step)
    final = evaluate(model, spec.replace(seed=EVAL_SEED), cfg.eval_size, device, precision=cfg.precision)
    lineage = [lineage_entry("train", None, spec.name, seed, final, steps=cfg.steps, lr=cfg.lr, precision=cfg.precision)]
    if is_main():  # under torchrun, rank 0 writes
        checkpoint.save(out, model, vocab=vocab.TOKENS, task=spec.to_dict(), lineage=lineage)
        state_path(out).unlink(missing_ok=True)
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


def finetune(*, parent, out, task, preset: str | Preset, lr="medium", spurious=0.0,
             spurious_offset=1, mix=0.0, steps=None, batch_size=None, loss=None,
             eval_every=None, eval_size=None, resume=False, save_every=None, seed=0,
             device="auto", precision="auto", on_step=None) -> dict:
    """Fine-tune checkpoint ``parent`` on ``task``; writes ``out`` and returns the results.

    Evaluates the fine-tuning operand(s) and the parent's pretraining operands, each
    without (C_Te=0) and with (C_Te=1) the spurious feature, during and after training.
    """
    preset = _preset(preset)  # a preset's name or the preset
    from wrapcli.tasks.checks import task_for
    from wrapcli.training.loop import Evaluation

    _check_out(out)
    device = resolve_device(device)
    ck = checkpoint.load(parent, device=device)
    base = ck.task_spec()
    spec = task_for(ck, task).replace(spurious=spurious, spurious_offset=spurious_offset, seed=seed)
    lr_value, lr_name = resolve_lr(lr, preset)
    cfg = TrainConfig(
        steps=_pick(steps, preset.ft_steps), batch_size=_pick(batch_size, preset.ft_batch_size),
        lr=lr_value, loss=_pick(loss, preset.loss), mix=mix,
        eval_every=_pick(eval_every, max(1, _pick(steps, preset.ft_steps) // 10)),
        eval_size=_pick(eval_size, preset.eval_size), precision=resolve_precision(precision, device),
    )
    if mix and base is None:
        raise WrapError(f"--mix needs the parent's pretraining task, which {parent} does not record")
    watched = _watched(spec, base)
    evaluation = Evaluation(watched, settings=("C_Te=0", "C_Te=1"))
    data = TaskData(spec, base.replace(seed=seed) if mix else None)
    log = train(ck.model, data, cfg, device=device, evaluation=evaluation,
                state_path=state_path(out), resume=resume, save_every=save_every, on_step=on_step)
    final = evaluate(ck.model, watched.replace(seed=EVAL_SEED), cfg.eval_size, device, precision=cfg.precision)
    entry = lineage_entry("finetune", ck.sha256, spec.name, seed, final, steps=cfg.steps, lr=cfg.lr,
                          precision=cfg.precision, lr_preset=lr_name,
                          spurious=spurious, spurious_offset=spurious_offset, mix=mix)
    if is_main():
        checkpoint.save(out, ck.model, vocab=ck.vocab, task=spec.to_dict(), lineage=[*ck.lineage, entry])
        state_path(out).unlink(missing_ok=True)
    return {
        "checkpoint": str(out),
        "parent": {"path": str(parent), "sha256": ck.sha256},
        "task": spec.to_dict(),
        "lr_preset": lr_name,
        "train": cfg.to_dict(),
        "device": device,
        "log": log,
        "final_eval": final,
    }


def finetune_text(*, parent, out, data, eval_data=None, preset: str | Preset, lr="medium",
                  steps=None, batch_size=None, eval_every=None, resume=False, save_every=None,
                  seed=0, device="auto", precision="auto", on_step=None, lora=None, adapter_only=False,
                  force=False, checkpointing=False, shard=False) -> dict:
    """Fine-tune a Hugging Face model directory on user JSONL records; writes ``out`` as
    a Hugging Face directory (weights, tokenizer, wrapcli.json with the lineage). With
    ``lora`` (a LoraSpec) only low-rank adapters train, merged into the written weights,
    or written alone (peft's adapter directory) with ``adapter_only``. ``shard``: fully
    sharded over torchrun's processes (wrapcli/core/distributed.py)."""
    preset = _preset(preset)  # a preset's name or the preset
    from wrapcli.textdata.userdata import load_tokenizer

    _check_out_dir(out, force)
    device = resolve_device(device)
    ck = checkpoint.load(parent, device=device)
    lr_value, lr_name = resolve_lr(lr, preset)
    result = _fit_text(ck, load_tokenizer(parent), "finetune", out=out, data=data, eval_data=eval_data,
                       lr=lr_value, steps=_pick(steps, preset.ft_steps),
                       batch_size=_pick(batch_size, preset.ft_batch_size), eval_every=eval_every, resume=resume,
                       save_every=save_every, seed=seed, device=device, precision=precision, on_step=on_step,
                       lora=lora, adapter_only=adapter_only, force=force, checkpointing=checkpointing,
                       shard=shard, lr_preset=lr_name)
    return {**result, "parent": {"path": str(parent), "sha256": ck.sha256}, "lr_preset": lr_name}


def pretrain_text(*, out, data, tokenizer, preset: str | Preset, arch=None, layers=None, heads=None, d_model=None,
                  steps=None, batch_size=None, lr=None, eval_every=None, eval_data=None, resume=False,
                  save_every=None, seed=0, device="auto", precision="auto", on_step=None, force=False) -> dict:
    """Train a fresh model of the preset's shape (or the given one) from scratch on user
    JSONL records with ``tokenizer`` (a directory holding tokenizer files, e.g. one that
    ``wrapcli facts`` writes); writes ``out`` as a Hugging Face directory. Its context is
    the longest record rounded up to a multiple of 64 tokens."""
    preset = _preset(preset)  # a preset's name or the preset
    from wrapcli.models.checkpoint import Checkpoint
    from wrapcli.textdata.userdata import encode, load_tokenizer, read_jsonl

    _check_out_dir(out, force)
    device = resolve_device(device)
    tok = load_tokenizer(tokenizer)
    shape = ModelShape(_pick(arch, preset.shape.arch), _pick(layers, preset.shape.n_layers),
                       _pick(heads, preset.shape.n_heads), _pick(d_model, preset.shape.d_model))
    longest = max(len(ids) for ids, _ in encode(*read_jsonl(data), tok, 1 << 20))
    special = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": pad_id(tok)}
    config = build_config(shape, len(tok), 64 * -(-longest // 64), special=special)
    ck = Checkpoint(model=build_model(config, seed).to(device), path=Path(tokenizer), sha256="")
    result = _fit_text(ck, tok, "train", out=out, data=data, eval_data=eval_data, lr=_pick(lr, preset.lr),
                       steps=_pick(steps, preset.steps), batch_size=_pick(batch_size, preset.batch_size),
                       eval_every=eval_every, resume=resume, save_every=save_every, seed=seed, device=device,
                       precision=precision, on_step=on_step, force=force, parent_sha256=None)
    return {**result, "model": shape.to_dict(), "n_params": sum(p.numel() for p in ck.model.parameters())}


def _check_out_dir(out, force: bool = False) -> None:
    if str(out).endswith(".safetensors") or str(out) == "-":
        raise UsageError("with --data the output is a Hugging Face directory that carries the tokenizer: give -o DIR")
    check_writable(out, directory=True)
    if Path(out).exists():
        check_replaceable(Path(out), force=force)  # before the work, not after it


def _fit_text(ck, tok, kind, *, out, data, eval_data, lr, steps, batch_size, eval_every, resume, save_every,
              seed, device, precision, on_step, lora=None, adapter_only=False, force=False, checkpointing=False,
              shard=False, **lineage) -> dict:
    """Train ``ck.model`` (or LoRA adapters on it) on user records, score ``eval_data``
    (default: ``data``) before and after, and write ``out`` (a Hugging Face directory with
    ``tok``) with its lineage."""
    from wrapcli.core.files import sha256
    from wrapcli.textdata.textscore import score_text
    from wrapcli.textdata.userdata import text_data

    train_set = text_data(data, None, ck.model, seed, tokenizer=tok)
    eval_set = text_data(eval_data, None, ck.model, seed, tokenizer=tok) if eval_data else train_set
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr,
                      # the loss TextData computes: answer tokens of prompt/answer records, every token of text
                      loss="full" if train_set.kind == "text" else "answer",
                      eval_every=_pick(eval_every, max(1, steps // 10)),
                      precision=resolve_precision(precision, device))
    before = score_text(ck.model, eval_set, device)
    if checkpointing:
        enable_checkpointing(ck.model)
    wrapped, adapters = None, None
    if lora is not None:
        from wrapcli.training import lora as lora_mod

        wrapped = lora_mod.attach(ck.model, lora)  # injects the adapters into ck.model itself
        adapters = lora_mod.describe(wrapped, lora)
        lineage["lora"] = adapters
    with process_group(device):  # a sharded model still needs the group to be scored and gathered
        log = train(ck.model, train_set, cfg, device=device, state_path=state_path(out),
                    resume=resume, save_every=save_every, on_step=on_step, shard=shard)
        if checkpointing:
            ck.model.gradient_checkpointing_disable()
        after = score_text(ck.model, eval_set, device)  # sharded: every rank takes part in the forward
        if shard:
            _unshard(ck)
    entry = lineage_entry(kind, lineage.pop("parent_sha256", ck.sha256), f"data:{Path(data).name}", seed, {},
                          steps=cfg.steps, lr=cfg.lr, precision=cfg.precision, data_sha256=sha256(data), **lineage)
    ck.lineage = [*ck.lineage, entry]
    if is_main():
        if adapter_only:
            _write_adapter(wrapped, out, tok, ck.lineage, force)
        else:
            if wrapped is not None:
                ck.model = lora_mod.merged(wrapped)
            checkpoint.export(ck, out, tokenizer=tok, force=force)
        state_path(out).unlink(missing_ok=True)
    return {
        "lora": adapters,
        "written": "adapter" if adapter_only else "model",
        "checkpointing": checkpointing,
        "processes": world().size,
        "fsdp": shard,
        "checkpoint": str(out),
        "data": {"path": str(data), "sha256": sha256(data), "records": train_set.n_records},
        "eval_data": str(eval_data or data),
        "train": cfg.to_dict(),
        "device": device,
        "log": log,
        "before": before,
        "after": after,
    }


def _unshard(ck) -> None:
    """Gather a sharded model's weights onto rank 0, into a fresh load of the checkpoint
    it was trained from (on the CPU), which is what rank 0 then writes."""
    from wrapcli.core.distributed import full_state_dict

    weights = full_state_dict(ck.model)  # collective: every rank gives its shards
    if is_main():
        ck.model = checkpoint.load(ck.path, device="cpu").model
        ck.model.load_state_dict(weights)


def _write_adapter(wrapped, out, tok, lineage, force: bool = False) -> None:
    """peft's adapter directory (adapter_config.json, adapter_model.safetensors), the
    tokenizer, and wrapcli.json with the lineage."""
    import json

    from wrapcli.core.files import atomic_path
    from wrapcli.models.checkpoint import SIDE_FILE

    with atomic_path(out, directory=True, force=force) as tmp:
        wrapped.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / SIDE_FILE).write_text(json.dumps({"vocab": None, "task": None, "lineage": lineage}, indent=2))


def _watched(spec: TaskSpec, base: TaskSpec | None) -> TaskSpec:
    """The fine-tuning components plus the parent's pretraining ones (with every operand
    its prior covers): what a fine-tune may have changed."""
    comps = list(spec.components)
    if base is not None:
        comps += [c for c in base.eval_components() if c not in comps]
    return spec.replace(components=tuple(comps), spurious=0.0)
