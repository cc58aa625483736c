"""Presets check themselves when defined, and name every protocol the CLI runs (the demo
included), so `make demo` needs no setting the CLI alone cannot give."""

import dataclasses

import pytest

from wrapcli.core.errors import UsageError
from wrapcli.training import presets


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_is_valid_and_its_lrs_rise(name):
    p = presets.get(name)
    lrs = [lr for _, lr in p.ft_lrs]
    assert [n for n, _ in p.ft_lrs] == ["small", "medium", "large"] and lrs == sorted(lrs)
    assert p.window <= p.text_len and p.shape.d_model % p.shape.n_heads == 0
    assert p.reft_steps >= 1


def test_the_demo_preset_is_the_cpu_protocol_on_a_smaller_model():
    demo, cpu = presets.get("demo"), presets.get("cpu")
    assert demo.ft_lrs == cpu.ft_lrs and demo.ft_steps == cpu.ft_steps and demo.loss == cpu.loss
    assert (demo.text_len, demo.window, demo.steps, demo.batch_size) == (cpu.text_len, cpu.window, cpu.steps, cpu.batch_size)
    assert demo.prior == "a=0.999,b=0.001" and demo.reft_steps == 200


@pytest.mark.parametrize("change, words", [
    ({"steps": 0}, "steps must be positive"),
    ({"eval_size": 2.5}, "eval_size must be positive"),
    ({"window": 60}, "window 60 exceeds text_len 48"),
    ({"loss": "mse"}, "loss must be full or answer"),
    ({"ft_lrs": (("small", 1e-3), ("large", 1e-4))}, "from small to large"),
    ({"lr": 0.0}, "learning rates must be positive"),
    ({"prior": "a=abc"}, "invalid prior"),
])
def test_a_bad_preset_is_refused_when_defined(change, words):
    with pytest.raises((ValueError, UsageError), match=words):
        dataclasses.replace(presets.get("cpu"), **change)


def test_an_unknown_preset_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown preset 'gpu'"):
        presets.get("gpu")
