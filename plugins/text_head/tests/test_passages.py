"""The context layout of retrieved passages: what the model reads must hold the answer in the
token pieces the answer is written with."""

import pytest
from aios_text.facts import make_facts
from aios_text.inference import DEFAULT_MODEL
from aios_text.passages import context_ids
from aios_text.tokenizer import TextTokenizer

from aios.memory.conditioner import Passage


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer.load(DEFAULT_MODEL / "tokenizer.json")


def contains(ids: list[int], part: list[int]) -> bool:
    return any(ids[i:i + len(part)] == part for i in range(len(ids) - len(part) + 1))


def test_an_answer_that_begins_a_passage_is_held_in_its_mid_sentence_pieces(tokenizer):
    facts = make_facts(60, seed=0).train
    for fact in facts:  # the second template begins with the answer (after "The")
        passage = fact.sentences[1]
        answer = tokenizer.encode(" " + fact.answer.removeprefix("the "))  # "The" begins it
        assert contains(context_ids(tokenizer, [Passage(passage, 0.9)], 256), answer), passage


def test_the_start_of_a_text_splits_differently_which_is_why_passages_get_a_space(tokenizer):
    # the reason for the layout: without the space a name at the start is other pieces
    starts = [f.sentences[1] for f in make_facts(60, seed=0).train]
    split = [s for s in starts if tokenizer.encode(s)[:2] != tokenizer.encode(" " + s)[:2]]
    assert split


def test_passages_are_closed_by_eos_and_the_best_is_nearest_the_prompt(tokenizer):
    ids = context_ids(tokenizer, [Passage("the best one", 0.9), Passage("a worse one", 0.2)], 256)
    eos = tokenizer.eos_id
    expected = [*tokenizer.encode(" a worse one"), eos, *tokenizer.encode(" the best one"), eos]
    assert ids == expected


def test_leading_whitespace_of_a_passage_is_not_doubled(tokenizer):
    assert context_ids(tokenizer, ["  indented"], 256) == context_ids(tokenizer, ["indented"], 256)
