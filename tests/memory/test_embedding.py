"""What the core gives every embedder: batching, normalisation, and `auto`."""

import numpy as np
import pytest

from aios.errors import AiosError, PluginNotFoundError
from aios.memory.embedding import build_embedder, embed_in_batches, normalise
from aios.registry import Registry
from conftest import WordsEmbedder, make_plugin, registering, with_words_embedder


def test_rows_come_back_in_input_order_and_unit_length_whatever_the_batching():
    texts = ["a b", "a", "c c c", "b", "a b c d e"]
    one = WordsEmbedder().embed(texts)
    calls = []

    def batch(chunk):
        calls.append(len(chunk))
        return WordsEmbedder().embed(chunk) * 3.0  # unnormalised, on purpose

    again = embed_in_batches(texts, batch, dim=64, batch_size=2)
    np.testing.assert_allclose(again, one, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(again, axis=1), 1.0, rtol=1e-6)
    assert calls == [2, 2, 1] and again.dtype == np.float32


def test_a_zero_vector_stays_zero_instead_of_becoming_nan():
    assert np.array_equal(normalise(np.zeros((1, 3))), np.zeros((1, 3), np.float32))


def test_a_batch_function_of_the_wrong_shape_is_reported():
    with pytest.raises(AiosError, match=r"shape \(2, 3\) for 2 texts; expected \(2, 4\)"):
        embed_in_batches(["a", "b"], lambda chunk: np.ones((len(chunk), 3)), dim=4, batch_size=8)


def test_non_string_input_is_refused_naming_its_position():
    with pytest.raises(TypeError, match=r"texts\[1\] is a int"):
        WordsEmbedder().embed(["a", 3])


def test_a_large_input_shows_a_progress_bar(capsys):
    WordsEmbedder().embed(["word"] * 300, progress=True)
    assert "words: 100%" in capsys.readouterr().err


def test_auto_builds_the_highest_priority_embedder():
    registry = with_words_embedder(Registry())
    registry.add_plugin(make_plugin(**registering("aios_register_embedders",
                                                  ("low", WordsEmbedder, {"priority": 1}))),
                        name="low", distribution="d", version="1")
    assert build_embedder("auto", registry).name == "words"


def test_without_any_embedder_auto_says_what_to_install():
    with pytest.raises(PluginNotFoundError, match="pip install aios-text"):
        build_embedder("auto", Registry())


def test_an_object_without_the_embedder_interface_is_refused():
    registry = Registry()
    registry.add_plugin(make_plugin(**registering("aios_register_embedders",
                                                  ("bad", object, {}))),
                        name="bad", distribution="d", version="1")
    with pytest.raises(AiosError, match="lacks `name`, `dim` or `embed`"):
        build_embedder("bad", registry)
