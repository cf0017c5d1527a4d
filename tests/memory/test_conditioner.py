"""The memory conditioner: the prompt's top-k passages above a threshold join the request."""

import numpy as np
import pytest

from aios.errors import AiosError, ConfigError
from aios.memory import reference_store
from aios.memory.conditioner import MemoryConditioner, Passage
from aios.protocols import EngineContext, GenerationRequest
from conftest import NoisyHead, WordsEmbedder

PASSAGES = ["The river Quell flows into the Marn Sea.", "Lake Ivo lies north of Dorran.",
            "Tarn castle stands on a rock.", "The Marn Sea is salty and cold.",
            "Dorran is a town of bakers."]


@pytest.fixture
def store(tmp_path):
    with reference_store(str(tmp_path / "store"), WordsEmbedder.dim) as s:
        s.add(embeddings=WordsEmbedder().embed(PASSAGES), contents=PASSAGES,
              source=[f"doc{i}" for i in range(len(PASSAGES))],
              extra=[{"embedder": "words"}] * len(PASSAGES))
        yield s


def context(store, embedder=None):
    return EngineContext(head=NoisyHead(), storage=store, embedder=embedder or WordsEmbedder())


def request(prompt="Where does the river Quell flow?"):
    return GenerationRequest(prompt=prompt, modality="text", num_steps=1)


def test_the_best_passages_come_first_with_their_cosine_scores_and_sources(store):
    out = MemoryConditioner(top_k=2, min_score=-1, lexical_weight=0).condition(request(),
                                                                              context(store))
    query = WordsEmbedder().embed([request().prompt])[0]
    scores = WordsEmbedder().embed(PASSAGES) @ query  # the reference: every cosine, exactly
    best = np.argsort(-scores, kind="stable")[:2]
    assert [p.text for p in out.context] == [PASSAGES[i] for i in best]
    assert [p.source for p in out.context] == [f"doc{i}" for i in best]
    np.testing.assert_allclose([p.score for p in out.context], scores[best], atol=1e-5)
    assert out.context[0].text == PASSAGES[0] and all(p.id for p in out.context)
    assert out.prompt == request().prompt  # the prompt itself is left alone


def test_passages_below_min_score_are_left_out(store):
    found = MemoryConditioner(top_k=5, min_score=0.3).retrieve(request().prompt, context(store))
    assert found and all(p.score >= 0.3 for p in found)
    everything = MemoryConditioner(top_k=5, min_score=-1).retrieve(request().prompt,
                                                                  context(store))
    assert len(everything) == 5 > len(found)


def test_an_empty_store_is_an_error_saying_how_to_fill_it(tmp_path):
    with reference_store(str(tmp_path / "empty"), WordsEmbedder.dim) as empty:
        with pytest.raises(AiosError, match="is empty; fill it first: aios memory add"):
            MemoryConditioner().condition(request(), context(empty))


def test_no_store_is_a_config_error_naming_memory_path():
    with pytest.raises(ConfigError, match="memory.path"):
        MemoryConditioner().condition(request(), EngineContext(NoisyHead(), None,
                                                               WordsEmbedder()))


def test_a_store_of_another_dimension_is_refused(tmp_path):
    with reference_store(str(tmp_path / "s8"), 8) as other:
        other.add(embeddings=np.eye(8, dtype=np.float32)[:1])
        with pytest.raises(AiosError, match="8-dimensional vectors but the embedder 'words'"):
            MemoryConditioner().condition(request(), context(other))


def test_querying_with_another_embedder_than_the_store_was_filled_with_warns(store, capsys):
    class Other(WordsEmbedder):
        name = "other"

    MemoryConditioner(min_score=-1).condition(request(), context(store, Other()))
    assert "holds vectors of embedder 'words' but is queried with 'other'" in \
        capsys.readouterr().err


def test_hybrid_ranking_puts_the_passage_naming_the_prompts_subject_first(tmp_path):
    """An embedder that knows nothing of names ranks the wrong river first; the words decide."""
    texts = ["The river Quell flows into the Marn Sea.", "The river Brisk flows into the Tarn Sea.",
             "Dorran is a town of bakers."]
    vectors = np.array([[0.9, np.sqrt(1 - 0.81), 0], [0.8, 0, np.sqrt(1 - 0.64)],
                        [0.5, np.sqrt(1 - 0.25), 0]], np.float32)  # cosines 0.9, 0.8, 0.5

    class Fixed:  # every prompt embeds to the first axis
        name, dim = "fixed", 3

        def embed(self, batch, *, progress=False):
            return np.tile(np.eye(3, dtype=np.float32)[0], (len(batch), 1))

    with reference_store(str(tmp_path / "s"), 3) as s:
        s.add(embeddings=vectors, contents=texts)
        ctx = EngineContext(head=NoisyHead(), storage=s, embedder=Fixed())
        prompt = "Where does the river Brisk flow?"
        dense = MemoryConditioner(top_k=2, min_score=-1, lexical_weight=0).retrieve(prompt, ctx)
        hybrid = MemoryConditioner(top_k=2, min_score=-1).retrieve(prompt, ctx)
        kept = MemoryConditioner(top_k=3, min_score=0.6).retrieve(prompt, ctx)
    assert [p.text for p in dense] == texts[:2]
    assert [p.text for p in hybrid] == [texts[1], texts[0]]
    assert hybrid[0].score == pytest.approx(0.8 + 0.5 * 1.0)  # cosine + weight x overlap
    assert [p.text for p in kept] == [texts[1], texts[0]]  # the threshold is on the cosine


@pytest.mark.parametrize(("options", "match"), [({"top_k": 0}, "top_k"),
                                                ({"min_score": 2.0}, "min_score"),
                                                ({"placement": "cross-attention"}, "trained"),
                                                ({"lexical_weight": -1}, "lexical_weight"),
                                                ({"lexical_weight": float("nan")},
                                                 "lexical_weight"),
                                                ({"top_k": 8, "candidates": 4}, "at least top_k")])
def test_bad_options_are_refused_with_the_reason(options, match):
    with pytest.raises(ValueError, match=match):
        MemoryConditioner(**options)


def test_passages_are_plain_immutable_values():
    passage = Passage("text", 0.5, "src", "id")
    with pytest.raises(AttributeError):
        passage.score = 1.0  # type: ignore[misc]
