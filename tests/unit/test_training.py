"""The training loop: schedule, learning, and exact resume."""

import math

import pytest
import torch

from wrapcli.tasks import vocab
from wrapcli.tasks.sequences import batch_for_step
from wrapcli.tasks.spec import parse_prior
from wrapcli.training.batches import TaskData, loss_on
from wrapcli.training.loop import TrainConfig, lr_at, train

from models import tiny
from specs import parse_task

SPEC = parse_task("count", prior=parse_prior("a=0.9,b=0.1"), text_len=48)


def test_lr_schedule_hand_values():
    cfg = TrainConfig(steps=100, batch_size=1, lr=1e-3, warmup_frac=0.2, min_lr_ratio=0.01)
    assert lr_at(0, cfg) == pytest.approx(1e-3 / 20)
    assert lr_at(19, cfg) == pytest.approx(1e-3)  # end of the 20-step warm-up
    assert lr_at(20, cfg) == pytest.approx(1e-3)  # cosine starts at the peak
    mid = 20 + 40  # halfway through the cosine: (peak + floor) / 2
    assert lr_at(mid, cfg) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(99, cfg) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 79 / 80)))


def test_answer_loss_is_cross_entropy_at_the_answer():
    model = tiny().eval()
    x = torch.as_tensor(batch_for_step(SPEC, 0, 4).tokens)
    with torch.no_grad():
        full_logits = model(input_ids=x).logits  # HF's own forward over the whole row
        expected = torch.nn.functional.cross_entropy(full_logits[:, -3], x[:, -2])
        assert loss_on(model, x, "answer").item() == pytest.approx(expected.item(), rel=1e-5)
        expected_full = torch.nn.functional.cross_entropy(
            full_logits[:, :-1].reshape(-1, full_logits.shape[-1]), x[:, 1:].reshape(-1)
        )
        assert loss_on(model, x, "full").item() == pytest.approx(expected_full.item(), rel=1e-5)


@pytest.mark.parametrize("loss", ["full", "answer"])
def test_loss_falls(loss):
    model = tiny()
    cfg = TrainConfig(steps=40, batch_size=32, lr=3e-3, loss=loss, eval_every=20, eval_size=32)
    x = torch.as_tensor(batch_for_step(SPEC, 10_000, 64).tokens)
    with torch.no_grad():
        before = loss_on(model.eval(), x, loss).item()
    train(model, SPEC, cfg)
    with torch.no_grad():
        after = loss_on(model.eval(), x, loss).item()
    assert after < before - 0.3


def test_resume_gives_identical_weights(tmp_path):
    cfg = TrainConfig(steps=12, batch_size=8, lr=1e-3, eval_every=4, eval_size=16)
    straight = tiny(seed=1)
    log_a = train(straight, SPEC, cfg)

    state = tmp_path / "run.state"
    interrupted = tiny(seed=1)

    class Stop(Exception):
        pass

    def stop_at_7(step, metrics):
        if step == 7:
            raise Stop

    with pytest.raises(Stop):
        train(interrupted, SPEC, cfg, state_path=state, save_every=3, on_step=stop_at_7)
    assert state.exists()
    resumed = tiny(seed=99)  # different init: everything must come from the state file
    log_b = train(resumed, SPEC, cfg, state_path=state, resume=True, save_every=3)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [e["step"] for e in log_a] == [e["step"] for e in log_b]
    assert [e["accuracy"] for e in log_a] == [e["accuracy"] for e in log_b]


def test_resume_refuses_state_from_other_settings(tmp_path):
    from wrapcli.core.errors import WrapError

    state = tmp_path / "run.state"
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, eval_every=3, eval_size=8)

    def stop(step, metrics):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(), SPEC, cfg, state_path=state, save_every=2, on_step=stop)
    other = TrainConfig(steps=6, batch_size=4, lr=2e-3, eval_every=3, eval_size=8)
    with pytest.raises(WrapError, match="other settings"):
        train(tiny(), SPEC, other, state_path=state, resume=True)


def test_bad_training_settings():
    from wrapcli.core.errors import WrapError

    with pytest.raises(WrapError, match="steps.*learning rate"):
        TrainConfig(steps=0, batch_size=1, lr=-1)
    with pytest.raises(WrapError, match="loss"):
        TrainConfig(steps=1, batch_size=1, lr=1e-3, loss="mse")


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_mixed_batches_come_from_the_parent_task_at_the_exact_fraction(fraction):
    data = TaskData(parse_task("count:b", text_len=48), mix_spec=parse_task("count:a", text_len=48))
    cfg = TrainConfig(steps=40, batch_size=4, lr=1e-3, mix=fraction)
    operands = [set(data.batch(s, cfg, "cpu")["input_ids"][:, 2].tolist()) for s in range(40)]
    assert operands.count({vocab.ID["a"]}) == int(40 * fraction)
    assert operands.count({vocab.ID["b"]}) == 40 - int(40 * fraction)


@pytest.mark.parametrize("loss, precision, tolerance", [
    ("full", "fp32", 1e-3), ("answer", "fp32", 1e-3), ("answer", "bf16", 0.05), ("full", "bf16", 0.05)])
def test_trainer_follows_a_plain_loop(loss, precision, tolerance):
    """The optimised path (answer-only logits, fused GELU, grouped AdamW; bf16 autocast
    with eager attention) gives the loss curve of a plain fp32 loop written out here: HF
    forward over the whole row, the same schedule, decay groups and clipping, same init
    and batches. fp32 agrees to float rounding, bf16 within its rounding noise."""
    cfg = TrainConfig(steps=30, batch_size=8, lr=3e-3, loss=loss, eval_every=1000, eval_size=8,
                      precision=precision)
    seen = {}
    train(tiny(seed=3), SPEC, cfg, on_step=lambda s, m: seen.update({s: m["loss"]} if "loss" in m else {}))

    model = tiny(seed=3).train()
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    plain = {}
    for step in range(cfg.steps):
        x = torch.as_tensor(batch_for_step(SPEC, step, cfg.batch_size).tokens)
        logits = model(input_ids=x).logits
        if loss == "full":
            value = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
        else:
            value = torch.nn.functional.cross_entropy(logits[:, -3], x[:, -2])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        opt.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        plain[step + 1] = value.item()
    assert sorted(seen) == [10, 20, 30]
    for step, value in seen.items():
        assert value == pytest.approx(plain[step], rel=tolerance), step
    assert plain[30] < plain[1] - 0.3  # it learned something: the comparison is not vacuous


def test_background_batches_are_the_inline_ones_with_each_rank_its_slice():
    from wrapcli.training.batches import prefetched

    cfg = TrainConfig(steps=7, batch_size=6, lr=1e-3)
    data = TaskData(SPEC)
    inline = list(prefetched(data, cfg, 2, "cpu", background=False))
    ahead = list(prefetched(data, cfg, 2, "cpu", slice(3, 6), background=True))
    assert [s for s, _ in inline] == [s for s, _ in ahead] == [2, 3, 4, 5, 6]
    for (step, a), (_, b) in zip(inline, ahead):
        expected = torch.as_tensor(batch_for_step(SPEC, step, 6).tokens)
        assert torch.equal(a["input_ids"], expected) and torch.equal(b["input_ids"], expected[3:6])


def test_weight_decay_follows_nanogpts_rule_stated_by_module_type():
    """Independently of make_optimizer's dim() test: nanoGPT decays the weights of the
    linear layers (GPT-2's Conv1D) and of the embeddings, and nothing else."""
    import torch
    from transformers.pytorch_utils import Conv1D

    from wrapcli.training.loop import TrainConfig, make_optimizer

    model = tiny()
    opt = make_optimizer(model, TrainConfig(steps=1, batch_size=1, lr=1e-3))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    expected = {id(m.weight) for m in model.modules() if isinstance(m, (Conv1D, torch.nn.Linear, torch.nn.Embedding))}
    assert decayed == expected and len(expected) == 2 + 4 * 2  # wte (tied to lm_head), wpe, 4 per block x 2
