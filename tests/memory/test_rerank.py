"""Lexical re-ranking: the prompt's words, weighed by how rare they are among the candidates."""

import math

import numpy as np
import pytest

from aios.memory.rerank import lexical_overlap, rerank, words

CANDIDATES = ["The river Quell flows into the Marn Sea.",
              "The river Brisk flows into the Tarn Sea.",
              "Dorran is a town of bakers."]


def test_words_are_case_folded_and_split_on_punctuation_in_any_script():
    assert words("The river QUELL, flows; into Ærø!") == {"the", "river", "quell", "flows",
                                                          "into", "ærø"}


def test_the_overlap_is_the_idf_weighted_share_of_the_matchable_query_words():
    overlap = lexical_overlap("Where does the river Brisk flow?", CANDIDATES)
    # by hand: "the" and "river" are held by 2 of 3 candidates, "brisk" by 1; "where", "does"
    # and "flow" by none, so they are left out of the share
    common, rare = math.log(4 / 2.5), math.log(4 / 1.5)
    total = 2 * common + rare
    np.testing.assert_allclose(overlap, [2 * common / total, 1.0, 0.0])


def test_a_word_every_candidate_holds_weighs_almost_nothing_but_a_rare_one_decides():
    texts = ["alpha beta", "alpha gamma", "alpha delta"]
    overlap = lexical_overlap("alpha gamma", texts)
    assert overlap[1] == pytest.approx(1.0)
    assert overlap[0] == overlap[2] < 0.25


@pytest.mark.parametrize("query", ["", "?!", "nothing matches here"])
def test_no_matchable_word_gives_zero_overlap_everywhere(query):
    assert lexical_overlap(query, CANDIDATES).tolist() == [0.0, 0.0, 0.0]
    assert lexical_overlap(query, []).shape == (0,)


def test_the_name_in_the_prompt_lifts_its_passage_above_a_closer_embedding():
    similarities = [0.9, 0.8, 0.5]  # the embedder prefers the wrong river
    order, scores = rerank("Where does the river Brisk flow?", CANDIDATES, similarities, 0.5)
    assert order == [1, 0, 2]
    np.testing.assert_allclose(scores, np.asarray(similarities) + 0.5 * lexical_overlap(
        "Where does the river Brisk flow?", CANDIDATES))


def test_weight_zero_keeps_the_embeddings_order_and_scores():
    order, scores = rerank("Where does the river Brisk flow?", CANDIDATES, [0.9, 0.8, 0.5], 0)
    assert order == [0, 1, 2]
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.5])


def test_ties_keep_the_embeddings_order():
    order, _ = rerank("unrelated", ["a", "b", "c"], [0.5, 0.5, 0.5], 1.0)
    assert order == [0, 1, 2]
