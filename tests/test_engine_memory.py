"""`ArrowEngine.diffuse` with memory: retrieval into the request, bypass, and write-back."""

import pytest

from aios.config import load_config
from aios.engine import ArrowEngine
from aios.errors import ConfigError
from aios.memory import reference_store
from conftest import WordsEmbedder, memory_registry


@pytest.fixture
def registry():
    return memory_registry()


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "memory"
    texts = ["The river Quell flows into the Marn Sea.", "Tarn castle stands on a rock."]
    with reference_store(str(path), WordsEmbedder.dim) as store:
        store.add(embeddings=WordsEmbedder().embed(texts), contents=texts)
    return path


def engine(registry, *overrides):
    config = load_config(overrides=["memory.backend=reference", *overrides], registry=registry)
    return ArrowEngine.from_config(config, registry=registry)


def test_memory_guided_retrieves_for_the_prompt_without_a_configured_conditioner(
        registry, store_path):
    with engine(registry, f"memory.path={store_path}") as e:
        out = e.diffuse("Where does the river Quell flow?", memory_guided=True)
        assert out == ("Where does the river Quell flow? "
                       "[The river Quell flows into the Marn Sea.]")
        assert e.last_request.context[0].score > 0.3


def test_a_configured_memory_conditioner_runs_by_default_and_false_bypasses_it(
        registry, store_path):
    with engine(registry, f"memory.path={store_path}", "conditioners.0.name=memory",
                "conditioners.0.min_score=-1", "conditioners.0.top_k=1") as e:
        assert e.diffuse("Tarn castle").endswith("[Tarn castle stands on a rock.]")
        assert e.diffuse("Tarn castle", memory_guided=False) == "Tarn castle []"


def test_memory_guided_without_a_store_names_the_setting(registry):
    with engine(registry) as e, pytest.raises(ConfigError, match="memory.path"):
        e.diffuse("anything", memory_guided=True)


def test_without_memory_no_embedder_is_built(registry, store_path):
    with engine(registry, f"memory.path={store_path}") as e:
        e.diffuse("plain")
        assert e._embedder is None


def test_remember_writes_the_generation_back_and_a_later_prompt_retrieves_it(
        registry, store_path):
    with engine(registry, f"memory.path={store_path}") as e:
        first = e.diffuse("Ravens nest in Tarn castle", remember=True)
        assert e.storage.count() == 3
        e.diffuse("Ravens nest in Tarn castle", memory_guided=True)
        assert e.last_request.context[0].text == first


def test_write_back_in_the_config_remembers_every_generation(registry, store_path):
    with engine(registry, f"memory.path={store_path}", "memory.write_back=true") as e:
        e.diffuse("one")
        e.diffuse("two", remember=False)
        assert e.storage.count() == 3
