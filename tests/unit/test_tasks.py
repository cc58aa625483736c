"""Task sequences against brute-force re-derivation from the decoded text."""

import json

import numpy as np
import pytest

from wrapcli.core.errors import WrapError
from wrapcli.tasks import vocab
from wrapcli.tasks.sequences import batch_for_step, eval_batch, make_batch, plant, relation_holds
from wrapcli.tasks.spec import Component, TaskSpec, parse_prior

from specs import parse_task


def decode(row):
    """Split a token row into (family, operand, param, text) by reading tokens, the way a
    person would, checking the fixed layout on the way."""
    toks = [vocab.TOKENS[int(i)] for i in row]
    assert toks[0] == "<bos>" and toks[4] == "<sot>" and toks[-4:-2] == ["<eot>", "<ans>"]
    assert toks[-1] == "<eos>"
    return toks[1][1:-1], toks[2], int(toks[3]), "".join(toks[5:-4]), toks[-2]


def brute_answer(family, operand, param, text):
    if family.startswith("count"):
        window = text[-param:]
        n = sum(window[i : i + len(operand)] == operand for i in range(len(window) - len(operand) + 1))
        return str(n)
    if family.startswith("index"):
        starts = [i for i in range(len(text) - len(operand) + 1) if text[i : i + len(operand)] == operand]
        if len(starts) < param:
            return "<none>"
        return str(len(text) - starts[-param])
    assert family == "token"
    return text[len(text) - param]


TASKS = ["count,index,token,count:ab,index:ca,count2:a", "count:aa,index:bb", "token"]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("text_len", [48, 250])
def test_answers_match_brute_force(task, text_len):
    spec = parse_task(task, prior=parse_prior("a=0.5,b=0.3,c=0.2"), text_len=text_len)
    batch = batch_for_step(spec, 0, 300)
    for row, ans in zip(batch.tokens, batch.answer):
        family, operand, param, text, answer = decode(row)
        assert len(text) == text_len
        assert answer == vocab.TOKENS[ans]
        assert answer == brute_answer(family, operand, param, text), (family, operand, text)


def test_index_none_when_fewer_than_k():
    spec = parse_task("index:cc", text_len=20, k=6)
    batch = batch_for_step(spec, 0, 200)
    assert (batch.answer == vocab.NONE).any()


def test_operand_frequencies_follow_prior():
    prior = {"a": 0.7, "b": 0.2, "c": 0.1}
    spec = parse_task("count", prior=parse_prior("a=0.7,b=0.2,c=0.1"), text_len=48)
    batch = make_batch(spec, np.random.default_rng(0), 20000)
    for op, p in prior.items():
        # 4 standard errors of a binomial proportion
        assert abs((batch.operand == op).mean() - p) < 4 * np.sqrt(p * (1 - p) / 20000)


def test_composite_operands_draw_letters_independently():
    spec = parse_task("count_composite", prior=parse_prior("a=0.8,b=0.2"), text_len=48)
    batch = make_batch(spec, np.random.default_rng(0), 20000)
    assert abs((batch.operand == "aa").mean() - 0.64) < 0.015
    assert abs((batch.operand == "ab").mean() - 0.16) < 0.015
    assert not np.char.find(batch.operand.astype(str), "c").max() >= 0


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("family", ["count", "index"])
def test_spurious_fraction_is_exact_and_relation_is_clean(fraction, family):
    spec = parse_task(f"{family}:b", text_len=48, spurious=fraction, k=3)
    for step in range(3):
        batch = batch_for_step(spec, step, 96)
        assert batch.spurious.sum() == round(fraction * 96)
        for row, planted in zip(batch.tokens, batch.spurious):
            text = np.array(["abc".index(t) for t in decode(row)[3]])
            # fraction 0: natural strings, no filtering; otherwise clean both ways
            if fraction > 0:
                assert relation_holds(spec, family, text) == planted


def test_count_relation_by_brute_force():
    spec = parse_task("count:b", text_len=48, spurious=1.0, spurious_offset=2)
    batch = batch_for_step(spec, 0, 64)
    for row in batch.tokens:
        window = decode(row)[3][-40:]
        assert window.count("b") == window.count("a") + 2


def test_plant_keeps_a_and_edits_only_the_window():
    rng = np.random.default_rng(0)
    spec = parse_task("count:b", text_len=48, spurious=1.0)
    from wrapcli.tasks.grammar import sample_windows

    texts = sample_windows(rng, 200, 48)
    for text in texts:
        before = text.copy()
        if plant(spec, "count", text, rng):
            assert (text[:8] == before[:8]).all()  # outside the 40-token window
            assert ((before == 0) == (text == 0)).all()  # every a untouched
            assert relation_holds(spec, "count", text)


def test_same_seed_same_data_other_seed_other_data():
    spec = parse_task("count", prior=parse_prior("a=0.9,b=0.1"), text_len=48, seed=5)
    a, b = batch_for_step(spec, 7, 32), batch_for_step(spec, 7, 32)
    assert (a.tokens == b.tokens).all()
    assert not (batch_for_step(spec.replace(seed=6), 7, 32).tokens == a.tokens).all()
    assert not (batch_for_step(spec, 8, 32).tokens == a.tokens).all()
    e1 = eval_batch(spec, Component("count", "a"), 50, None)
    e2 = eval_batch(spec, Component("count", "a"), 50, None)
    assert (e1.tokens == e2.tokens).all()


def test_spec_json_round_trip():
    spurious = parse_task(
        "count,index:b", prior=parse_prior("a=0.5,b=0.3,c=0.2"),
        text_len=64, window=30, spurious=0.5, spurious_offset=2, seed=9,
    )
    mix = parse_task("count,count2:a,count:ab,token,count:a@b,index:ab@ca", text_len=64, k=3, offset=10)
    for spec in (spurious, mix):
        assert TaskSpec.from_dict(json.loads(spec.to_json())) == spec
    assert json.loads(mix.to_json())["components"] == [
        "count", "count2:a", "count_composite:ab", "token", "count:a@b", "index_composite:ab@ca"]


@pytest.mark.parametrize("task, plain", [("count:a@b", "count:a"), ("index:c@a", "index:c"),
                                         ("count:ab@ba,count:b", "count:ab,count:b")])
def test_relabelled_answers_are_the_answer_operands(task, plain):
    """randFT data: the prompt names one operand, the answer is brute-forced for the other."""
    spec = parse_task(task, text_len=48, k=3)
    batch = make_batch(spec, np.random.default_rng(0), 300)
    for row, ans, comp in zip(batch.tokens, batch.answer, batch.component):
        family, operand, param, text, answer = decode(row)
        c = spec.components[comp]
        assert operand == c.operand and answer == vocab.TOKENS[ans]
        assert answer == brute_answer(family, c.answered, param, text), (task, text)
    # The same draw without the relabelling: the same prompts, other answers.
    unrelabelled = make_batch(parse_task(plain, text_len=48, k=3), np.random.default_rng(0), 300)
    np.testing.assert_array_equal(unrelabelled.tokens[:, :-2], batch.tokens[:, :-2])
    assert (unrelabelled.answer != batch.answer).any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(task="bogus:a"), "unknown task family"),
        (dict(task="count:z"), "not valid"),
        (dict(task="token:a"), "takes no operand"),
        (dict(task="count@b"), "needs a fixed operand"),
        (dict(task="count:a@a"), "another valid operand"),
        (dict(task="count:aa@b"), "another valid operand"),
        (dict(task="count", prior=(("a", 0.5), ("b", 0.2))), "sum to 1"),
        (dict(task="count", prior=(("d", 1.0),)), "outside a, b, c"),
        (dict(task="count", window=100, text_len=48), "window"),
        (dict(task="count", spurious=1.5), "spurious fraction"),
        (dict(task="token", spurious=0.5), "count and index"),
        (dict(task="count", text_len=400), "text_len"),
    ],
)
def test_bad_specs_name_the_problem(kwargs, message):
    task = kwargs.pop("task")
    with pytest.raises(WrapError, match=message):
        parse_task(task, **kwargs)


def test_parse_prior_rejects_garbage():
    with pytest.raises(WrapError, match="invalid prior"):
        parse_prior("a0.9")
    assert parse_prior("a=0.9,b=0.1") == (("a", 0.9), ("b", 0.1))
