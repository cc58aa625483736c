"""The resume state a training run saves every minute (``OUT.state``): safetensors, never
pickle. Model tensors as ``model/NAME``, optimizer state as ``optim/I/KEY``, and as
metadata the step, the log so far, the run's settings and the data's identity, which a
resumed run must match exactly."""

from __future__ import annotations

import json

from wrapcli.core.errors import WrapError
from wrapcli.core.files import atomic_path


# -- resumable state (safetensors, never pickle) ------------------------------------
def save_state(path, model, opt, cfg, identity: str, step, log) -> None:
    from safetensors.torch import save_file

    from wrapcli.models.checkpoint import canonical_header, split_tied

    weights, _ = split_tied(model)
    tensors = {f"model/{k}": v for k, v in weights.items()}
    for i, p in enumerate(_params(opt)):
        for key, value in opt.state.get(p, {}).items():
            tensors[f"optim/{i}/{key}"] = value.detach().cpu().contiguous()
    meta = {"step": str(step), "log": json.dumps(log), "train": json.dumps(cfg.to_dict()), "data": identity}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        canonical_header(tmp)


def load_state(path, model, opt, cfg, identity: str) -> tuple[int, list]:
    """Restore a resume state after checking it: written by a run with these settings and
    data, every model tensor present with its shape, everything finite, and its step
    within the run. Any doubt is an error that says to delete the state."""
    import torch
    from safetensors import safe_open

    from wrapcli.models.checkpoint import split_tied

    fix = "delete it to start over, or rerun with the flags that wrote it"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise WrapError(f"{path}: unreadable resume state ({str(e).strip()[:200]}); {fix}") from None
    try:
        settings, step, log = json.loads(meta["train"]), int(meta["step"]), json.loads(meta["log"])
    except (KeyError, ValueError) as e:
        raise WrapError(f"{path}: not a wrapcli resume state (bad or missing {e}); {fix}") from None
    if settings != cfg.to_dict() or meta.get("data") != identity:
        raise WrapError(f"{path}: resume state was written by a run with other settings; {fix}")
    if not 0 <= step <= cfg.steps:
        raise WrapError(f"{path}: resume state is at step {step}, outside this run's 0..{cfg.steps}; {fix}")
    weights, _ = split_tied(model)
    model_sd = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    for name, t in weights.items():
        if name not in model_sd:
            raise WrapError(f"{path}: resume state lacks model tensor {name}; {fix}")
        if tuple(model_sd[name].shape) != tuple(t.shape):
            raise WrapError(f"{path}: resume state's {name} has shape {list(model_sd[name].shape)}, "
                            f"the model's {list(t.shape)}; {fix}")
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise WrapError(f"{path}: resume state's {name} has non-finite values; {fix}")
    model.load_state_dict(model_sd, strict=False)
    device = next(model.parameters()).device
    for i, p in enumerate(_params(opt)):
        state = {k.split("/")[2]: v for k, v in tensors.items() if k.startswith(f"optim/{i}/")}
        if state:
            opt.state[p] = {k: (v if k == "step" else v.to(device)) for k, v in state.items()}
    return step, log


def _params(opt):
    return [p for group in opt.param_groups for p in group["params"]]
