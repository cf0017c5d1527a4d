from typing import ClassVar

import numpy as np
import pytest

from aios.errors import AiosError
from aios.evolve.router import BASE, AdapterRouter, kmeans


class WordEmbedder:
    """Texts are embedded by which of three words they start with (fixed unit vectors)."""

    name = "words"
    dim = 3
    AXES: ClassVar[dict[str, int]] = {"bible": 0, "code": 1, "law": 2}

    def embed(self, texts, *, progress=False):
        out = np.zeros((len(texts), 3), np.float32)
        for i, text in enumerate(texts):
            word, _, rest = text.partition(" ")
            out[i, self.AXES[word]] = 1.0
            if rest:  # "law code" leans towards law a little
                out[i, self.AXES[rest]] = 0.95
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def router(tmp_path):
    router = AdapterRouter(tmp_path, WordEmbedder())
    router.set_centroids(BASE, ["bible", "bible"])
    router.set_centroids("code", ["code", "code"])
    yield router
    router.close()


def test_a_prompt_like_the_base_text_gets_no_adapter(router):
    assert router.choose("bible").weights == {}


def test_a_prompt_near_an_adapter_gets_it_alone(router):
    choice = router.choose("code")
    assert choice.weights == {"code": 1.0}
    assert choice.similarities["code"] > choice.similarities[BASE]


def test_several_near_adapters_are_weighted_by_similarity(router):
    router.set_centroids("law", ["law"])
    weights = router.choose("law code").weights
    assert set(weights) == {"law", "code"} and weights["law"] > weights["code"]
    assert sum(weights.values()) == pytest.approx(1.0)


def test_an_adapter_that_is_not_allowed_is_never_chosen(router):
    assert router.choose("code", allowed=[]).weights == {}


def test_removing_an_adapter_removes_its_centroids(router):
    router.remove("code")
    assert router.names() == [BASE]


def test_a_router_without_base_centroids_says_how_to_get_them(tmp_path):
    router = AdapterRouter(tmp_path, WordEmbedder())
    router.set_centroids("code", ["code"])
    with pytest.raises(AiosError, match="aios evolve"):
        router.choose("code")


def test_kmeans_finds_the_clusters_of_unit_vectors():
    rng = np.random.default_rng(0)
    a = np.array([1, 0, 0]) + 0.05 * rng.normal(size=(20, 3))
    b = np.array([0, 1, 0]) + 0.05 * rng.normal(size=(20, 3))
    vectors = np.concatenate([a, b])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    centres = kmeans(vectors, 2)
    assert sorted(int(np.argmax(c)) for c in centres) == [0, 1]
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, rtol=1e-5)


def test_centroids_of_another_embedder_are_refused(router):
    class Other(WordEmbedder):
        name = "other"

    router.embedder = Other()
    with pytest.raises(AiosError, match="embedded with \\['words'\\].*'other'"):
        router.choose("code")
