"""Conjugate prompting: the relabelling is exact, checked with hand-written oracles."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wrapcli.core.errors import WrapError
from wrapcli.tasks import vocab
from wrapcli.tasks.conjugate import parse_mapping, relabel
from wrapcli.tasks.evaluation import evaluate
from wrapcli.tasks.sequences import eval_batch
from wrapcli.tasks.spec import Component, TaskSpec, parse_components


class Oracle(torch.nn.Module):
    """Answers from the prompt's tokens by rule: counts the operand letter in the last
    ``window`` text tokens (or reads the token ``offset`` back). ``fixed_letter`` makes
    it ignore the operand and always count that letter: a model that is right only on
    prompts about that letter."""

    def __init__(self, window=40, offset=40, fixed_letter=None):
        super().__init__()
        self.window, self.offset, self.fixed = window, offset, fixed_letter

    def forward(self, input_ids, logits_to_keep=1):
        x = input_ids.numpy()  # (B, ans + 1), ends with <eot> <ans>
        text = x[:, 5:-2]
        out = np.zeros((len(x), 1, vocab.VOCAB_SIZE), dtype=np.float32)
        for i, row in enumerate(x):
            if row[1] == vocab.FAMILY_ID["token"]:
                answer = text[i, -self.offset]
            else:
                letter = vocab.ID[self.fixed] if self.fixed else row[2]
                answer = vocab.NUMBER_BASE + int((text[i, -self.window:] == letter).sum())
            out[i, 0, answer] = 1.0
        return SimpleNamespace(logits=torch.from_numpy(out))


SPEC = TaskSpec(components=parse_components("count:a,count:b,token"), text_len=48)


def test_oracle_is_exact_with_and_without_relabelling():
    mapping = parse_mapping("a:c,c:a")
    plain = evaluate(Oracle(), SPEC, 100, settings=("natural",))
    conj = evaluate(Oracle(), SPEC, 100, settings=("natural",), conjugate=mapping)
    for comp in ("count:a", "count:b", "token"):
        assert plain[comp]["natural"]["accuracy"] == 1.0
        assert conj[comp]["natural"]["accuracy"] == 1.0  # token answers mapped back


def test_relabelling_changes_what_a_shortcut_model_sees():
    """A model that always counts 'a' is right on count:a prompts; under a:c,c:a the
    relabelled prompt asks about c, so it must fail there and succeed on count:c."""
    mapping = parse_mapping("a:c,c:a")
    shortcut = Oracle(fixed_letter="a")
    spec = TaskSpec(components=parse_components("count:a,count:c"), text_len=48)
    plain = evaluate(shortcut, spec, 200, settings=("natural",))
    conj = evaluate(shortcut, spec, 200, settings=("natural",), conjugate=mapping)
    assert plain["count:a"]["natural"]["accuracy"] == 1.0
    assert conj["count:a"]["natural"]["accuracy"] < 0.5
    assert conj["count:c"]["natural"]["accuracy"] == 1.0


def test_relabel_maps_text_operand_and_composites():
    mapping = parse_mapping("a:b,b:c,c:a")
    batch = eval_batch(
        TaskSpec(components=parse_components("count:ab"), text_len=48), Component("count_composite", "ab"), 5, None
    )
    out = relabel(batch, mapping)
    assert (out.tokens[:, 2] == vocab.ID["bc"]).all()
    text_in = np.array(vocab.TOKENS)[batch.tokens[:, 5:-4]]
    text_out = np.array(vocab.TOKENS)[out.tokens[:, 5:-4]]
    assert (np.vectorize(mapping.get)(text_in) == text_out).all()
    assert (out.tokens[:, [0, 1, 3, 4, -4, -3, -1]] == batch.tokens[:, [0, 1, 3, 4, -4, -3, -1]]).all()


@pytest.mark.parametrize("text", ["a:b", "a:d", "ab", "a:b,b:b"])
def test_non_invertible_or_garbage_mappings(text):
    with pytest.raises(WrapError):
        parse_mapping(text)
