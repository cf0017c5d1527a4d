"""ArrowStorage: aios's memory, records with embeddings kept as Arrow columns on disk.

`open_memory` is the entry point; backends (the NumPy reference here, the Rust one in
`aios_native`) register as storage plugins and differ only in their search kernel, so every
backend reads and writes the same directory format.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aios._lazy import lazy_face
from aios.memory.errors import (
    CorruptStoreError,
    InvalidRecordError,
    RecordNotFoundError,
    StoreError,
    StoreLockedError,
)
from aios.memory.filters import Filter
from aios.memory.manifest import NAME as MANIFEST
from aios.memory.schema import MODALITIES, record_schema
from aios.memory.search import Kernel, ReferenceKernel, SearchResult
from aios.memory.store import MemoryStore, Retention

# Loaded on first use (embedding and ingestion pull in tqdm; most callers only open a store).
_EXPORTS = {
    "conditioner": ("MemoryConditioner", "Passage"),
    "embedding": ("build_embedder", "embed_in_batches"),
    "ingest": ("IngestSummary", "ingest_into", "read_text", "remember", "text_files"),
}
__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)


def reference_store(path: str, dim: int | None = None, read_only: bool = False,
                    flush_rows: int = 100_000,
                    retention: Retention | Mapping[str, Any] | None = None,
                    copies: str | None = None) -> MemoryStore:
    """Reference storage: NumPy/BLAS exact search over memory-mapped Arrow segments."""
    return MemoryStore(path, dim, read_only=read_only, flush_rows=flush_rows,
                       retention=retention, copies=copies)


def open_memory(
    path: str | os.PathLike[str],
    dim: int | None = None,
    backend: str = "auto",
    *,
    read_only: bool = False,
    retention: Retention | Mapping[str, Any] | None = None,
    **options: Any,
) -> MemoryStore:
    """Open the store at `path`, creating it when the directory is new (then `dim` is needed).

    `backend` names a storage plugin (``native``, ``reference``) or ``auto`` for the best
    installed one. Only one process may open a store for writing; others may open it with
    ``read_only=True`` and see the records acknowledged when they opened it.
    """
    from aios.errors import PluginNotFoundError
    from aios.registry import INSTALL_HINTS, default_registry

    registry = default_registry()
    if backend == "auto":
        best = registry.best("storage")
        if best is None:
            raise PluginNotFoundError("storage", "auto", (), INSTALL_HINTS["storage"])
        backend = best.name
    factory = registry.get("storage", backend).factory
    return factory(path=os.fspath(path), dim=dim, read_only=read_only, retention=retention,
                   **options)


__all__ = [
    "MANIFEST",
    "MODALITIES",
    "CorruptStoreError",
    "Filter",
    "IngestSummary",
    "InvalidRecordError",
    "Kernel",
    "MemoryConditioner",
    "MemoryStore",
    "Passage",
    "RecordNotFoundError",
    "ReferenceKernel",
    "Retention",
    "SearchResult",
    "StoreError",
    "StoreLockedError",
    "build_embedder",
    "embed_in_batches",
    "ingest_into",
    "open_memory",
    "read_text",
    "record_schema",
    "reference_store",
    "remember",
    "text_files",
]
