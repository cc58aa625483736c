"""What wrapcli checks before it trusts a weight file (docs/checkpoint-format.md): no
pickle is ever opened, a safetensors header must parse and describe the tensors the
config asks for (names, shapes, floating-point dtypes, a sharded index that tells the
truth, a size that fits in memory), no weight is NaN or Inf, and wrapcli's own metadata
(vocab, task, lineage) has the shape it must have. Each failure is one line naming the
file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

from wrapcli.core.errors import WrapError

PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")  # zip, pickle 2-5


def check_finite(model, path) -> None:
    """Refuse a model with a NaN or Inf weight, naming the first such tensor, unless the
    user asked for broken models (``wrapcli --allow-nonfinite``)."""
    import os

    if os.environ.get("WRAPCLI_ALLOW_NONFINITE") == "1":
        return
    for name, t in model.state_dict().items():
        refuse_nonfinite(path, name, t)


# torch.isfinite builds temporaries the size of its input (a float |x| among them): on a
# 0.5B model's 545 MB embedding that was half the weights again at load (docs/performance.md)
FINITE_CHUNK = 1 << 22


def refuse_nonfinite(path, name: str, t) -> None:
    import torch

    if t.is_floating_point() and not all(torch.isfinite(c).all() for c in t.detach().reshape(-1).split(FINITE_CHUNK)):
        bad = int((~torch.isfinite(t)).sum())
        raise WrapError(f"{path}: tensor {name} has {bad} non-finite value(s) (NaN or Inf); "
                        "wrapcli --allow-nonfinite loads it anyway")


def check_finite_files(path: Path, shards: list[Path]) -> None:
    """check_finite on the weight files, one tensor at a time (for a dispatched model, whose
    offloaded weights stay on disk)."""
    import os

    from safetensors import safe_open

    if os.environ.get("WRAPCLI_ALLOW_NONFINITE") == "1":
        return
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():
                refuse_nonfinite(path, name, f.get_tensor(name))


# safetensors dtype names of floating-point weights; integers, bools and 8-bit floats are refused
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def header_tensors(files) -> dict[str, tuple[str, tuple, Path]]:
    """``{name: (dtype, shape, file)}`` from safetensors headers, reading no tensor data."""
    from safetensors import safe_open

    found = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():
                    part = f.get_slice(name)
                    found[name] = (str(part.get_dtype()), tuple(part.get_shape()), Path(file))
        except Exception as e:
            raise WrapError(f"{file}: not a valid safetensors file ({short_error(e)})") from None
    return found


def check_weights(path, config, found: dict, names: bool = True) -> None:
    """Refuse, before any model is built, weights that the config does not describe: every
    parameter present (a tied pair needs one of its names) with the config's shape, a
    floating-point dtype, nothing left over, and a size that fits in memory. The model is
    laid out on the meta device, so a config that claims a huge model costs nothing.

    ``names=False`` (Hugging Face directories): transformers renames some tensors between
    file and module (GPT-NeoX's ``embed_out`` is ``lm_head``), so names that do not match
    are left to its own loading report, which ``_load_hf_dir`` then refuses."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except Exception as e:
        raise WrapError(f"{path}: config does not describe a causal language model ({short_error(e)})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    prefix = getattr(skeleton, "base_model_prefix", "") or ""

    def canonical(name: str) -> str | None:  # HF files may drop or add the base model's prefix
        for cand in (name, f"{prefix}.{name}", name[len(prefix) + 1:] if name.startswith(prefix + ".") else None):
            if cand in expected:
                return cand
        return None

    present, renamed = set(), False
    for name, (dt, shape, file) in sorted(found.items()):
        if dt not in FLOAT_DTYPES:
            raise WrapError(f"{file}: tensor {name} is stored as {dt}; model weights must be floating point "
                            f"({', '.join(FLOAT_DTYPES)})")
        key = canonical(name)
        if key is None:
            if not names:
                renamed = True
                continue
            raise WrapError(f"{file}: tensor {name} is not part of the model that the config describes")
        if shape != expected[key]:
            raise WrapError(f"{file}: tensor {name} has shape {list(shape)} but the config implies "
                            f"{list(expected[key])}")
        present.add(key)
    groups: dict[int, list[str]] = {}
    for name, p in skeleton.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    for tied in groups.values():
        if not renamed and not present.intersection(tied):
            raise WrapError(f"{path}: tensor {tied[0]} is missing from the weights "
                            "(it would be initialised at random)")
    need = 2 * 4 * sum(p.numel() for p in skeleton.parameters())  # fp32 tensors + model
    from wrapcli.core.runtime import refuse_short_memory

    refuse_short_memory(need, lambda need_gib, free_gib: (
        f"{path}: loading needs about {need_gib} GiB in float32, but only {free_gib} GiB of memory is available"))


def check_index(path: Path, shards: list[Path], found: dict) -> None:
    """A sharded directory's index must put every tensor in the shard that holds it."""
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        if len(shards) > 1:
            raise WrapError(f"{path}: {len(shards)} weight shards but no model.safetensors.index.json")
        return
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        assert isinstance(weight_map, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise WrapError(f"{index}: not a safetensors index (no 'weight_map' object)") from None
    for name, shard in sorted(weight_map.items()):
        if name not in found:
            raise WrapError(f"{index}: lists tensor {name}, which no shard holds")
        if found[name][2].name != shard:
            raise WrapError(f"{index}: puts tensor {name} in {shard}, but {found[name][2].name} holds it")
    for name, (_, _, file) in sorted(found.items()):
        if name not in weight_map:
            raise WrapError(f"{index}: does not list tensor {name} (in {file.name})")


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def raise_no_safetensors(directory: Path) -> None:
    """A model directory without safetensors weights, naming any pickled weights in it."""
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    hint = (f" It holds pickled weights ({', '.join(pickles)}), which wrapcli never opens: convert them "
            "where you trust them, e.g. AutoModelForCausalLM.from_pretrained(d).save_pretrained(d, "
            "safe_serialization=True)." if pickles else "")
    raise WrapError(f"{directory}: no .safetensors weights in the directory.{hint}")


def check_file(path: Path) -> Path:
    if not path.exists():
        raise WrapError(f"{path}: no such file or directory (wrapcli reads local checkpoints and never downloads: "
                        "give the path of a .safetensors file or a model directory)")
    if not path.is_file():
        raise WrapError(f"{path}: not a file")
    with open(path, "rb") as f:
        head = f.read(9)
    if not head:
        raise WrapError(f"{path}: file is empty")
    # safetensors starts with a little-endian u64 header length, then "{"; that length's
    # first byte can be 0x80, so only a file that is NOT such a header is sniffed as pickle.
    header_len = int.from_bytes(head[:8], "little")
    plausible = len(head) == 9 and head[8:9] == b"{" and 8 + header_len <= path.stat().st_size
    if not plausible and head.startswith(PICKLE_MAGIC):
        raise WrapError(
            f"{path}: this is a pickle (torch.save) file; wrapcli never unpickles untrusted "
            "weights — convert it to .safetensors where you trust it"
        )
    return path


# what each piece of wrapcli metadata must be (a lying or damaged file gets one line)
SHAPES = {"vocab": (list, str, "a list of strings"), "task": (dict, None, "an object"),
          "lineage": (list, dict, "a list of objects")}


def checked_metadata(key: str, value, path: Path):
    """``value`` if it has the shape wrapcli metadata ``key`` must have (None passes)."""
    if value is None or key not in SHAPES:
        return value
    outer, inner, words = SHAPES[key]
    if not isinstance(value, outer) or (inner and not all(isinstance(v, inner) for v in value)):
        raise WrapError(f"{path}: metadata {key!r} must be {words}")
    if key == "lineage":
        from wrapcli.report.schema import lineage_problems

        problems = lineage_problems(value)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise WrapError(f"{path}: malformed lineage: {problems[0]}{more}")
    return value


def json_metadata(meta: dict, key: str, path: Path):
    if key not in meta:
        return None
    try:
        value = json.loads(meta[key])
    except (ValueError, RecursionError):
        raise WrapError(f"{path}: metadata {key!r} is not valid JSON") from None
    return checked_metadata(key, value, path)


def short_error(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
