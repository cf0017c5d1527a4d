"""How backends are found and chosen: plugins, `auto`, and the `memory:` config section."""

import numpy as np
import pytest

from aios.config import load_config
from aios.errors import ConfigError, PluginNotFoundError
from aios.memory import MemoryStore, open_memory
from aios.registry import default_registry


def test_the_core_registers_the_reference_backend_at_priority_0():
    entry = default_registry().get("storage", "reference")
    assert (entry.plugin, entry.priority) == ("core", 0)


def test_auto_picks_the_highest_priority_backend(tmp_path):
    best = default_registry().best("storage")
    with open_memory(tmp_path / "s", 4) as store:
        assert store.backend == best.name
        assert isinstance(store, MemoryStore)


def test_an_unknown_backend_is_refused_with_suggestions(tmp_path):
    with pytest.raises(PluginNotFoundError, match="did you mean 'reference'"):
        open_memory(tmp_path / "s", 4, backend="refrence")


def test_the_memory_config_section_builds_the_store_with_its_options(tmp_path):
    config = load_config(None, [f"memory.path={tmp_path / 's'}", "memory.backend=reference",
                                "memory.dim=4", "memory.flush_rows=2"], default_registry())
    factory = default_registry().get("storage", config.memory.backend).factory
    with factory(path=config.memory.path, **config.memory.options) as store:
        store.add(embeddings=np.ones((3, 4)))
        assert store.stats()["segments"] == 1  # flushed after 2 rows


def test_a_misspelt_memory_option_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="memory.flush_row"):
        load_config(None, [f"memory.path={tmp_path}", "memory.backend=reference",
                           "memory.flush_row=2"], default_registry())


def test_every_backend_builds_a_store_with_the_protocols_interface(open_store):
    from aios.protocols import MemoryStore as StoreProtocol

    assert isinstance(open_store(), StoreProtocol)
