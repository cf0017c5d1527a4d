"""Scores of memory use: exact match counts answers in continuations, and the perplexity of a
fact sentence is measured with relevant, random and no passages in front."""

import math
import random

import pytest
from aios_text.facts import make_facts
from aios_text.memory_eval import answer_found, exact_match, fact_contexts, fact_perplexity
from aios_text.model_dir import load_text_model

from aios.schedules import masking_schedule

FACTS = make_facts(40, seed=3)


def test_an_answer_is_found_case_insensitively_anywhere_in_the_generation():
    assert answer_found("the Marn Sea", " It flows into The Marn sea, they say.")
    assert not answer_found("the Marn Sea", " It flows into the Marn.")


def test_exact_match_scores_only_the_continuation_of_each_prompt():
    facts = FACTS.held_out[:4]
    calls = []

    def generate(prompt):  # answers every second prompt; the prompt itself never counts
        calls.append(prompt)
        return prompt + (" " + answer_of[prompt] if len(calls) % 2 else " I do not know.")

    answer_of = {p: f.answer for f in facts for p, _ in f.prompts}
    result = exact_match(generate, facts, progress=False)
    assert len(result.generations) == 3 * len(facts)
    assert result.rate == pytest.approx(0.5)
    cloze = facts[0].cloze  # the cloze prompt names the subject, not the answer
    assert all(not g.startswith(cloze) for _, _, g in result.generations)


def test_the_relevant_context_states_the_fact_and_the_random_one_does_not():
    fact, others = FACTS.held_out[0], FACTS.train
    contexts = fact_contexts(fact, others, random.Random(0))
    assert contexts["relevant"][-1] == fact.statement and len(contexts["relevant"]) == 5
    assert len(contexts["random"]) == 5 and contexts["none"] == []
    assert not any(fact.answer in text and fact.subject in text for text in contexts["random"])
    assert contexts["relevant"][:4] == contexts["random"][:4]


def test_fact_perplexity_is_a_finite_bound_for_each_context_and_repeatable(model_dir):
    model, tokenizer, settings = load_text_model(model_dir)
    alpha = masking_schedule(settings["schedule"]).alpha
    first = fact_perplexity(model, tokenizer, alpha, FACTS.held_out[:2], FACTS.train, samples=2)
    again = fact_perplexity(model, tokenizer, alpha, FACTS.held_out[:2], FACTS.train, samples=2)
    assert set(first) == {"relevant", "random", "none"}
    assert all(math.isfinite(v) and v > 1 for v in first.values())
    assert first == again
