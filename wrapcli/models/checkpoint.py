"""Checkpoints: one ``.safetensors`` file with string metadata (docs/design.md decision 2).

Metadata keys (all strings; JSON where noted):

- ``format``: ``pt`` (safetensors' own convention for PyTorch tensors);
- ``wrapcli_schema``: checkpoint schema version (``1``);
- ``config``: the Hugging Face config, JSON (``model_type`` picks the class);
- ``vocab``: JSON list of token strings (synthetic tasks), absent for tokenizer models;
- ``task``: JSON task spec the weights were last trained on (tasks/spec.py);
- ``lineage``: JSON list, oldest first, one entry per training step that produced the
  weights: ``kind``, ``parent_sha256``, ``command``, ``seed``, ``steps``, ``lr``,
  ``task``, ``wrapcli_version``, ``created``;
- ``tied``: JSON ``{dropped_name: kept_name}`` for tied weights (safetensors stores
  shared tensors once; loading re-ties them through the config).

Loading also accepts a Hugging Face model directory (``config.json`` plus one or more
safetensors shards). Pickled weights (``*.bin``, ``*.pt``) are refused, never opened.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from wrapcli.core.errors import UsageError, WrapError
from wrapcli.core.files import atomic_path, sha256
from wrapcli.models.integrity import (
    SHAPES,
    check_file,
    check_finite,
    check_finite_files,
    check_index,
    check_weights,
    checked_metadata,
    header_tensors,
    json_metadata,
    raise_no_safetensors,
    short_error,
)

SCHEMA = "1"
SIDE_FILE = "wrapcli.json"  # synthetic metadata kept beside an exported HF directory


@dataclass
class Checkpoint:
    model: object  # a transformers PreTrainedModel
    path: Path
    sha256: str
    vocab: list[str] | None = None
    task: dict | None = None
    lineage: list[dict] = field(default_factory=list)

    @property
    def config(self):
        return self.model.config

    @property
    def context_length(self) -> int | None:
        from wrapcli.models.build import context_length

        return context_length(self.config)

    def task_spec(self):
        from wrapcli.tasks.spec import TaskSpec

        if not self.task:
            return None
        try:
            return TaskSpec.from_dict(self.task)
        except WrapError as e:
            raise WrapError(f"{self.path}: metadata 'task': {str(e).removeprefix('invalid task: ')}") from None


# -- saving -------------------------------------------------------------------------
def split_tied(model) -> tuple[dict, dict]:
    """State dict without duplicate storage, plus ``{dropped: kept}`` for tied names."""
    tensors, tied, seen = {}, {}, {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), t.shape, t.dtype) if t.numel() else None
        if key is not None and key in seen:
            tied[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        tensors[name] = t.detach().contiguous().cpu()
    return tensors, tied


def save(path, model, *, vocab=None, task=None, lineage=()) -> None:
    from safetensors.torch import save_file

    tensors, tied = split_tied(model)
    meta = {
        "format": "pt",
        "wrapcli_schema": SCHEMA,
        "config": model.config.to_json_string(use_diff=False),
        "lineage": json.dumps(list(lineage)),
        "tied": json.dumps(tied),
    }
    if vocab is not None:
        meta["vocab"] = json.dumps(list(vocab))
    if task is not None:
        meta["task"] = json.dumps(task)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        canonical_header(tmp)


def canonical_header(path) -> None:
    """Rewrite a safetensors header with sorted keys, in place. safetensors writes its
    metadata map in a per-process random order, so without this the same weights and
    metadata give different bytes (and sha256) on every run."""
    import struct

    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > n:  # cannot happen for safetensors' own compact JSON; keep its order
            return
        f.seek(8)
        f.write(text + b" " * (n - len(text)))  # safetensors pads its header with spaces


# -- loading ------------------------------------------------------------------------
def read_metadata(path) -> dict:
    """The string metadata of a wrapcli file, after checking it is safe to open."""
    from safetensors import safe_open

    path = check_file(Path(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise WrapError(f"{path}: not a valid safetensors file ({short_error(e)})") from None
    if "wrapcli_schema" in meta and meta["wrapcli_schema"] != SCHEMA:
        raise WrapError(f"{path}: a wrapcli checkpoint of schema {meta['wrapcli_schema'][:20]!r}; this wrapcli reads "
                        f"schema {SCHEMA}")
    return meta


def load(path, dtype: str = "float32", device: str = "cpu", placement: dict | None = None) -> Checkpoint:
    """Open a wrapcli ``.safetensors`` file or a Hugging Face model directory; with
    ``placement`` (wrapcli/core/runtime.py ``placement``), a directory's layers are dispatched
    over the devices, the CPU and disk by accelerate instead of moved to ``device``."""
    from wrapcli.models.build import quiet_transformers

    quiet_transformers()
    path = Path(path)
    if path.is_dir():
        return _load_hf_dir(path, dtype, device, placement)
    meta = read_metadata(path)
    if placement is not None:
        raise UsageError(f"--device-map: {path} is a wrapcli file; dispatch is for Hugging Face directories "
                         "(wrapcli export writes one)")
    if "compiled" in meta:
        raise WrapError(f"{path}: a compiled (Tracr) model, not a Hugging Face architecture (eval, finetune, "
                        "prune, probe, revive and compare read compiled models; export does not)")
    if "config" not in meta:
        raise WrapError(
            f"{path}: safetensors file has no 'config' metadata (not a wrapcli checkpoint); "
            "pass the Hugging Face model directory that contains it instead"
        )
    model = _model_from_file(path, meta, dtype, device)
    check_finite(model, path)
    return Checkpoint(
        model=model,
        path=path,
        sha256=sha256(path),
        vocab=json_metadata(meta, "vocab", path),
        task=json_metadata(meta, "task", path),
        lineage=json_metadata(meta, "lineage", path) or [],
    )


def read_lineage(path) -> list[dict]:
    """The lineage of a checkpoint without loading its weights (a Hugging Face directory's
    from its wrapcli.json, if any)."""
    path = Path(path)
    if path.is_dir():
        return read_side(path).get("lineage") or []
    return json_metadata(read_metadata(path), "lineage", path) or []


def read_side(directory: Path) -> dict:
    """A Hugging Face directory's wrapcli.json (vocab, task, lineage), each checked for
    shape; {} when there is none."""
    side = directory / SIDE_FILE
    if not side.is_file():
        return {}
    try:
        extra = json.loads(side.read_text())
    except (ValueError, RecursionError) as e:
        raise WrapError(f"{side}: invalid JSON ({str(e)[:80]})") from None
    if not isinstance(extra, dict):
        raise WrapError(f"{side}: must hold a JSON object (vocab, task, lineage)")
    for key in SHAPES:
        checked_metadata(key, extra.get(key), side)
    return extra


def is_compiled(path) -> bool:
    """Whether ``path`` is a compiled (Tracr) checkpoint (wrapcli/compiled/model.py)."""
    path = Path(path)
    return path.is_file() and "compiled" in read_metadata(path)


def save_compiled(path, model, lineage=()) -> None:
    """A compiled (Tracr) checkpoint: safetensors weights (the fixed ``unembed`` readout
    included, so it travels with the file) and the spec as JSON metadata ``compiled``."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "wrapcli_schema": SCHEMA, "compiled": model.spec.to_json(),
            "lineage": json.dumps(list(lineage))}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        canonical_header(tmp)


def placed_on(model) -> dict[str, int] | None:
    """How many modules of a dispatched model sit on each device (accelerate's
    ``hf_device_map``: a GPU index, cpu or disk); None when nothing was dispatched (the
    whole model fit on one device)."""
    where = getattr(model, "hf_device_map", None)
    if not where:
        return None
    counts: dict[str, int] = {}
    for device in where.values():
        counts[str(device)] = counts.get(str(device), 0) + 1
    return counts


def _model_from_file(path: Path, meta: dict, dtype: str, device: str):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        cfg = json.loads(meta["config"])
        config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    except Exception as e:
        raise WrapError(f"{path}: unreadable model config in metadata ({short_error(e)})") from None
    check_weights(path, config, header_tensors([path]))
    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise WrapError(f"{path}: cannot read tensors ({short_error(e)})") from None
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    tied = json_metadata(meta, "tied", path) or {}
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # shape mismatches (check_weights names them first)
        raise WrapError(f"{path}: weights do not match the config ({short_error(e)})") from None
    missing = [m for m in missing if m not in tied]
    if missing or unexpected:
        first = (missing or unexpected)[0]
        kind = "missing" if missing else "unexpected"
        raise WrapError(
            f"{path}: weights do not match the config ({len(missing)} missing, "
            f"{len(unexpected)} unexpected; first {kind}: {first})"
        )
    return model.to(device=device, dtype=getattr(torch, dtype)).eval()


def _load_hf_dir(path: Path, dtype: str, device: str, placement: dict | None = None) -> Checkpoint:
    import torch
    from transformers import AutoModelForCausalLM

    if not (path / "config.json").is_file():
        if (path / "adapter_config.json").is_file():
            raise WrapError(f"{path}: a LoRA adapter, not a model; fine-tune without --adapter-only to get the "
                            "merged model, or load it with peft onto its base")
        raise WrapError(f"{path}: directory has no config.json (not a Hugging Face model)")
    shards = list(path.glob("*.safetensors"))
    if not shards:
        raise_no_safetensors(path)
    for shard in shards:
        check_file(shard)
    found = header_tensors(sorted(shards))
    check_index(path, shards, found)
    check_weights(path, _hf_config(path), found, names=False)
    dispatch = {}
    if placement is not None:
        import atexit
        import shutil
        import tempfile

        check_finite_files(path, sorted(shards))  # offloaded weights are not in memory to check
        folder = tempfile.mkdtemp(prefix="wrapcli-offload-")
        atexit.register(shutil.rmtree, folder, True)
        dispatch = {"device_map": placement["device_map"], "max_memory": placement["max_memory"],
                    "offload_folder": folder}
    try:
        with _read_not_mapped(converted=any(d != _SAFETENSORS_DTYPES.get(dtype) for d, _, _ in found.values())):
            model, info = AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, use_safetensors=True,
                dtype=getattr(torch, dtype), attn_implementation="sdpa", output_loading_info=True, **dispatch,
            )
    except Exception as e:
        raise WrapError(f"{path}: cannot load Hugging Face model ({short_error(e)})") from None
    # transformers fills a missing tensor with random values and only warns: refuse instead
    for kind in ("missing_keys", "mismatched_keys", "unexpected_keys"):
        keys = sorted(str(k) for k in info.get(kind) or ())
        if keys:
            raise WrapError(f"{path}: weights do not match config.json ({len(keys)} {kind.replace('_keys', '')} "
                            f"tensor(s), first {keys[0]})")
    if placement is None:
        check_finite(model, path)
    extra = read_side(path)
    return Checkpoint(
        model=model.eval() if placement is not None else model.to(device).eval(),
        path=path,
        sha256=sha256(path),
        vocab=extra.get("vocab"),
        task=extra.get("task"),
        lineage=extra.get("lineage", []),
    )


_SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


@contextlib.contextmanager
def _read_not_mapped(converted: bool):
    """transformers memory-maps the weight files on Linux. Weights kept in their stored
    dtype are views of the mapping, read once; but converted ones (fp32 files loaded in
    bf16) are copies, and every mapped page read for them stays resident beside them until
    the load ends: a 0.5B model's bf16 load peaked at 1.7x its fp32 weights, not 0.5x
    (docs/performance.md). For a conversion, safetensors' ``pread`` backend reads each
    tensor into its own memory instead; a safetensors without it keeps the mapping."""
    import transformers.modeling_utils as loading

    real = getattr(loading, "safe_open", None)
    if not converted or real is None:
        yield
        return

    def read(*args, **kwargs):
        try:
            return real(*args, **{**kwargs, "backend": "pread"})
        except TypeError:  # a safetensors before the pread backend
            return real(*args, **kwargs)

    loading.safe_open = read
    try:
        yield
    finally:
        loading.safe_open = real


def _hf_config(path: Path):
    """config.json of a Hugging Face directory, refusing models that are not causal LMs."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as e:
        raise WrapError(f"{path / 'config.json'}: unreadable config ({short_error(e)})") from None
    archs = list(getattr(config, "architectures", None) or [])
    causal = ("ForCausalLM", "LMHeadModel")
    if archs and not any(a.endswith(causal) for a in archs):
        raise WrapError(f"{path}: a {archs[0]}, not a causal language model; wrapcli audits decoder LMs")
    if getattr(config, "is_encoder_decoder", False) or (
            not archs and config.model_type in ENCODERS and not getattr(config, "is_decoder", False)):
        raise WrapError(f"{path}: a {config.model_type} encoder, not a causal language model")
    return config


# model types that are encoders unless their config says is_decoder
ENCODERS = ("bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2",
            "camembert", "mpnet", "ernie")


def export(ckpt: Checkpoint, dest, tokenizer=None, force: bool = False) -> None:
    """Write ``ckpt`` (and a tokenizer: the given one, or for a synthetic checkpoint one
    built from its vocabulary) as a Hugging Face directory that ``from_pretrained`` opens."""
    from wrapcli.models.build import quiet_transformers

    quiet_transformers()
    if tokenizer is None and ckpt.vocab:
        tokenizer = vocab_tokenizer(ckpt.vocab)
    with atomic_path(dest, directory=True, force=force) as tmp:
        ckpt.model.save_pretrained(str(tmp), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        side = {"vocab": ckpt.vocab, "task": ckpt.task, "lineage": ckpt.lineage}
        (tmp / SIDE_FILE).write_text(json.dumps(side, indent=2))


def vocab_tokenizer(vocab: list[str]):
    """A word-level tokenizer for the synthetic tasks' vocabulary: tokens are separated by
    spaces ("<bos> <count> a 40 <sot> a b c ... <eot> <ans>", answer " 12"), so a prompt
    written as text reaches the model as the built-in tasks' token ids. A word outside the
    vocabulary is an error, never silently mapped to another token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def planned(path) -> tuple[object, tuple[dict, list | None]] | None:
    """A Hugging Face directory's config and ``signature`` without loading its weights (the
    model built from the config on the meta device), or None when it has no config.json
    (``load`` then says what is wrong)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path.is_dir() and (path / "config.json").is_file()):
        return None
    config = _hf_config(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return config, ({k: tuple(v.shape) for k, v in model.state_dict().items()}, read_side(path).get("vocab"))


