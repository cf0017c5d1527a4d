"""The shared memory-store suite runs every test once per backend (`reference`, `native`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aios.memory import MemoryStore, open_memory
from aios.registry import default_registry

BACKENDS = ("reference", "native")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param not in default_registry().names("storage"):
        pytest.skip(f"storage backend {request.param!r} is not installed")
    return request.param


@pytest.fixture
def open_store(backend: str, tmp_path: Path) -> Callable[..., MemoryStore]:
    """Open (or create) a store of the backend under test; closes them all at the end."""
    opened: list[MemoryStore] = []

    def open_(path: Path | str | None = None, dim: int | None = 8, **options: Any) -> MemoryStore:
        store = open_memory(path or tmp_path / "store", dim, backend=backend, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def unit_rows(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
