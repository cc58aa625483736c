"""What changed in the weights between two checkpoints, streamed tensor by tensor.

For every parameter tensor: relative change ||dW|| / ||W||, cosine similarity, and for
matrices the singular values of dW (from its Gram matrix): numerical rank and the share of dW's energy
(squared singular values) in its top 1 / 4 / 16 directions. A thin wrapper tends to be
low-rank and local. Aggregates per layer and per module kind, and the MLP neurons and
attention heads whose weights moved most. Tensors are read one at a time straight from
the safetensors files, so memory stays near the largest tensor, not the model.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from wrapcli.core.errors import WrapError
from wrapcli.models.adapters import layer_of

KIND_PATTERNS = (  # first match wins; names of GPT-2, Llama-family and GPT-NeoX modules
    ("embedding", r"(wte|wpe|embed|lm_head)"),
    ("norm", r"(ln_|norm|layernorm)"),
    ("attention", r"(attn|attention|q_proj|k_proj|v_proj|o_proj|query_key_value)"),
    ("mlp", r"(mlp|fc|c_proj|down_proj|up_proj|gate_proj|dense_h_to_4h|dense_4h_to_h)"),
)


class WeightFile:
    """Lazy access to the tensors of a wrapcli file or a (sharded) HF directory."""

    def __init__(self, path):
        from safetensors import safe_open

        from wrapcli.models.integrity import check_file, raise_no_safetensors

        self.path = Path(path)
        if self.path.is_dir():
            files = sorted(self.path.glob("*.safetensors"))
            if not files:
                raise_no_safetensors(self.path)
            config = self.path / "config.json"
            self.config = json.loads(config.read_text()) if config.is_file() else {}
        else:
            files = [self.path]
            self.config = None
        self.where, self.shapes = {}, {}
        for f in files:
            check_file(f)
            try:
                with safe_open(str(f), framework="pt") as h:
                    if self.config is None:
                        meta = h.metadata() or {}
                        self.config = json.loads(meta["config"]) if "config" in meta else {}
                    for name in h.keys():
                        self.where[name] = f
                        self.shapes[name] = tuple(h.get_slice(name).get_shape())
            except WrapError:
                raise
            except Exception as e:
                raise WrapError(f"{f}: not a valid safetensors file ({str(e).splitlines()[0][:160]})") from None

    def names(self) -> list[str]:
        return sorted(self.where)

    def shape(self, name: str) -> tuple:
        return self.shapes[name]

    def tensor(self, name: str):
        """One tensor, copied out of its file; the file is mapped only during the read,
        so pages already compared do not accumulate in memory."""
        from safetensors import safe_open

        with safe_open(str(self.where[name]), framework="pt") as h:
            return h.get_tensor(name)


def module_kind(name: str) -> str:
    for kind, pattern in KIND_PATTERNS:
        if re.search(pattern, name):
            return kind
    return "other"


def check_comparable(a: WeightFile, b: WeightFile) -> None:
    """Same tensor names and shapes (and vocabulary size), naming the first difference."""
    na, nb = set(a.names()), set(b.names())
    if na != nb:
        first = sorted(na ^ nb)[0]
        side = a.path if first in na else b.path
        raise WrapError(f"{a.path} and {b.path} differ: tensor {first} exists only in {side}")
    for name in a.names():
        if a.shape(name) != b.shape(name):
            raise WrapError(f"{a.path} and {b.path} differ: {name} has shape {a.shape(name)} vs {b.shape(name)}")


def tensor_stats(wa, wb) -> dict:
    """Statistics of one tensor pair (``wb`` is overwritten). Memory: the two tensors in
    float32, plus an (n x n) Gram matrix for the singular values (n = smaller side)."""
    import torch

    wa, wb = wa.float(), wb.float()
    na, nb = math.sqrt(_blocked_dot(wa, wa)), math.sqrt(_blocked_dot(wb, wb))
    dot = _blocked_dot(wa, wb)
    shape = list(wa.shape)
    delta = wb.sub_(wa)  # in place: two tensors of the largest size at most
    del wa
    nd = math.sqrt(_blocked_dot(delta, delta))
    stats = {
        "shape": shape,
        "norm": na,
        "delta_norm": nd,
        "relative_change": nd / na if na > 0 else (0.0 if nd == 0 else math.inf),
        "cosine": dot / (na * nb) if na * nb > 0 else 1.0,
    }
    if delta.dim() == 2 and nd > 0:
        s = singular_values(delta)
        energy = s**2 / (s**2).sum()
        # numerical rank at float32 precision (weights are stored in float32 or less)
        tol = s[0] * max(delta.shape) * torch.finfo(torch.float32).eps
        stats["rank"] = int((s > tol).sum().item())
        stats["energy_top"] = {str(k): float(energy[:k].sum().item()) for k in (1, 4, 16)}
    return stats


def singular_values(m, block: int = 4096):
    """Singular values of ``m`` (descending) from the eigenvalues of its smaller Gram
    matrix, accumulated in float64 over row blocks: exact enough for rank and energy at
    float32 tolerance, with an (n x n) workspace instead of a full SVD of a tall matrix."""
    import torch

    if m.shape[0] < m.shape[1]:
        m = m.T
    gram = torch.zeros(m.shape[1], m.shape[1], dtype=torch.float64, device=m.device)
    for i in range(0, m.shape[0], block):
        rows = m[i : i + block].double()
        gram += rows.T @ rows
    eig = torch.linalg.eigvalsh(gram).clamp(min=0).flip(0)
    return eig.sqrt().cpu()


def _blocked_dot(a, b, block: int = 1 << 20) -> float:
    """<a, b> accumulated in float64 a block at a time (a whole-tensor float64 copy of an
    embedding matrix would double the memory this module promises)."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    return sum((fa[i : i + block].double() * fb[i : i + block].double()).sum().item()
               for i in range(0, fa.numel(), block))


def compare_weights(path_a, path_b, top_units: int = 10, device: str = "cpu") -> dict:
    """The weight report for ``path_a`` -> ``path_b``; each tensor pair's statistics are
    computed on ``device`` (an 8B model's Gram matrices take minutes on a CPU)."""
    a, b = WeightFile(path_a), WeightFile(path_b)
    check_comparable(a, b)
    tensors, layers, kinds = {}, {}, {}
    for name in a.names():
        st = tensor_stats(a.tensor(name).to(device), b.tensor(name).to(device))
        tensors[name] = st
        for key, bucket in ((layer_of(name), layers), (module_kind(name), kinds)):
            if key is None:
                continue
            agg = bucket.setdefault(key, {"norm_sq": 0.0, "delta_sq": 0.0, "n_tensors": 0, "n_changed": 0})
            agg["norm_sq"] += st["norm"] ** 2
            agg["delta_sq"] += st["delta_norm"] ** 2
            agg["n_tensors"] += 1
            agg["n_changed"] += st["delta_norm"] > 0
    return {
        "a": str(path_a),
        "b": str(path_b),
        "tensors": tensors,
        "layers": {str(k): _finish(v) for k, v in sorted(layers.items())},
        "module_kinds": {k: _finish(v) for k, v in sorted(kinds.items())},
        "changed_tensors": [n for n, st in tensors.items() if st["delta_norm"] > 0],
        "l2_distance": math.sqrt(sum(st["delta_norm"] ** 2 for st in tensors.values())),
        "top_units": top_moved_units(a, b, top_units),
    }


def _finish(agg: dict) -> dict:
    norm = math.sqrt(agg["norm_sq"])
    return {
        "relative_change": math.sqrt(agg["delta_sq"]) / norm if norm else 0.0,
        "n_tensors": agg["n_tensors"],
        "n_changed": int(agg["n_changed"]),
    }


def top_moved_units(a: WeightFile, b: WeightFile, k: int) -> list[dict]:
    """MLP neurons and attention heads ranked by how far the weights that read from them
    (their output-projection slice) moved, for the architectures adapters.py knows."""
    from wrapcli.models.adapters import LAYOUTS, per_unit

    layout = LAYOUTS.get((a.config or {}).get("model_type"))
    if layout is None:
        return []
    n_heads = a.config.get("n_head") or a.config.get("num_attention_heads")
    units = []
    for name in a.names():
        for kind, proj in (("neuron", layout.mlp_out), ("head", layout.attn_out)):
            if not (name.startswith(layout.blocks + ".") and name.endswith(f".{proj}.weight")):
                continue
            delta = b.tensor(name).float() - a.tensor(name).float()
            for i, v in enumerate(per_unit(delta.double() ** 2, layout, kind, n_heads).sqrt().tolist()):
                if v > 0:
                    units.append({"layer": layer_of(name), "kind": kind, "index": i, "delta_norm": v})
    return sorted(units, key=lambda u: -u["delta_norm"])[:k]
