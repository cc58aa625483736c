"""The lean levers of full-parameter training (wrapcli/training/lean.py) change memory, not numbers:
each is checked bit for bit against autograd's and torch's own computation."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import wrapcli.training.lean as lean
import wrapcli.training.loop as training
from wrapcli.training.lean import pays_to_step_one_at_a_time, step_one_at_a_time, tied_gradients
from wrapcli.training.loop import TrainConfig, make_optimizer, train

from models import tiny, tiny_hf
from specs import parse_task


def tied_llama(pad=3):
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=True, pad_token_id=pad,
    )).eval()


def ids_with_repeats():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 12, (6, 10), generator=g)  # few distinct tokens: rows are summed several times
    ids[:, -2:] = 3  # the padding id, whose row gets no gradient
    return ids


def grads(model, ids, lean, precision="fp32", head_rows=False):
    model.zero_grad(set_to_none=True)
    lean_ctx = tied_gradients(model, "cpu") if lean else torch.enable_grad()
    with lean_ctx, torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        if head_rows:  # the answer-position shortcut: the head on (N, hidden) rows
            hidden = model.base_model(input_ids=ids).last_hidden_state
            logits = model.get_output_embeddings()(hidden[:, 4])
        else:
            logits = model(input_ids=ids).logits
        loss = logits.float().logsumexp(-1).mean() + logits[..., 7].float().mean()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("build", [tied_llama, lambda: tiny().eval()], ids=["llama-tied-padding", "gpt2-built-in"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("head_rows", [False, True], ids=["full-logits", "answer-rows"])
def test_tied_gradients_are_autograds_bit_for_bit(build, precision, head_rows, monkeypatch):
    monkeypatch.setattr(lean, "MMAPPED", 0)  # these matrices are tiny
    model = build()
    ids = ids_with_repeats() % model.config.vocab_size
    ref = grads(model, ids, False, precision, head_rows)
    twin = copy.deepcopy(model)
    got = grads(twin, ids, True, precision, head_rows)
    assert set(ref) == set(got)
    for name in ref:
        assert got[name].dtype == ref[name].dtype
        assert torch.equal(got[name], ref[name]), name  # padding id 3 in the inputs: its row's lookup is left out


def test_tied_gradients_leave_other_models_alone(monkeypatch):
    small = tied_llama()  # a tied matrix under MMAPPED: nothing worth saving
    with tied_gradients(small, "cpu"):
        assert "forward" not in vars(small.get_input_embeddings())
    monkeypatch.setattr(lean, "MMAPPED", 0)
    untied = tiny_hf("llama")  # separate head: autograd's own path, no patch
    frozen = tied_llama()
    frozen.get_input_embeddings().weight.requires_grad_(False)  # a LoRA run: the matrix does not train
    for model in (untied, frozen):
        with tied_gradients(model, "cpu"):
            assert "forward" not in vars(model.get_input_embeddings())
            assert "forward" not in vars(model.get_output_embeddings())
    tied = tied_llama()
    with tied_gradients(tied, "cpu"):
        assert "forward" in vars(tied.get_input_embeddings())
    assert "forward" not in vars(tied.get_input_embeddings())  # restored on exit
    assert "forward" not in vars(tied.get_output_embeddings())


def test_step_one_at_a_time_is_one_step_bit_for_bit():
    cfg = TrainConfig(steps=3, batch_size=1, lr=1e-2)
    a = tiny_hf("llama")
    b = copy.deepcopy(a)
    opt_a, opt_b = make_optimizer(a, cfg), make_optimizer(b, cfg)  # decay and no-decay groups
    x = torch.randint(0, 100, (4, 12))
    for _ in range(3):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad(set_to_none=True)
            model(input_ids=x, labels=x).loss.backward()
        opt_a.step()
        step_one_at_a_time(opt_b)
        assert all(p.grad is None for p in b.parameters())  # every gradient freed
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i in sa["state"]:
        for k in sa["state"][i]:
            assert torch.equal(sa["state"][i][k], sb["state"][i][k]), (i, k)


def test_training_with_and_without_the_levers_is_bit_identical(monkeypatch):
    """The whole loop on the built-in (tied) GPT-2: same weights with both levers on (the
    one-at-a-time step and the trim forced on this small model) as with torch's plain step
    and autograd's tied gradient."""
    spec = parse_task("count", text_len=48)
    cfg = TrainConfig(steps=6, batch_size=8, lr=3e-3, eval_every=3, eval_size=16)
    steps = []
    monkeypatch.setattr(lean, "MMAPPED", 0)
    monkeypatch.setattr(training, "step_one_at_a_time", lambda opt: steps.append(1) or lean.step_one_at_a_time(opt))
    leaned = tiny(seed=2)
    train(leaned, spec, cfg)
    assert len(steps) == cfg.steps
    monkeypatch.setattr(training, "pays_to_step_one_at_a_time", lambda opt: False)
    monkeypatch.setattr(training, "tied_gradients", lambda model, device: torch.enable_grad())
    plain = tiny(seed=2)
    train(plain, spec, cfg)
    for (name, pa), pb in zip(leaned.named_parameters(), plain.parameters()):
        assert torch.equal(pa, pb), name


def test_only_optimizers_with_a_large_tensor_step_one_at_a_time():
    cfg = TrainConfig(steps=1, batch_size=1, lr=1e-3)
    small = make_optimizer(tiny(), cfg)
    assert not pays_to_step_one_at_a_time(small)  # every tensor far under 32 MiB
    big = torch.nn.Embedding(9 << 20, 1)  # 36 MiB of fp32
    assert pays_to_step_one_at_a_time(make_optimizer(big, cfg))
    assert not pays_to_step_one_at_a_time(torch.optim.AdamW(big.parameters(), foreach=True))
