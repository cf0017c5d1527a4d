"""Immutable Arrow IPC segment files: written once (temp + fsync + rename), memory-mapped to read.

Opening a segment copies nothing: the table's buffers point into the mapped file, and the
embedding column becomes a NumPy (rows, dim) view that the search kernels read in place.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from aios.memory import schema as schemas
from aios.memory.errors import CorruptStoreError
from aios.memory.files import write_atomic
from aios.memory.manifest import SegmentEntry


def write(directory: Path, name: str, table: pa.Table) -> SegmentEntry:
    """Write `table` as one record batch in the Arrow IPC file format, durably."""
    batch = table.combine_chunks().to_batches()
    options = pa.ipc.IpcWriteOptions(compression=None)

    def dump(f: object) -> None:
        with pa.ipc.new_file(f, table.schema, options=options) as writer:
            for b in batch:
                writer.write_batch(b)

    write_atomic(directory / name, dump)
    return SegmentEntry(name, len(table), os.path.getsize(directory / name))


def load(directory: Path, entry: SegmentEntry, dim: int) -> pa.Table:
    """Memory-map a segment and check it against its manifest entry before any use."""
    path = directory / entry.file
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CorruptStoreError(f"segment {path} listed in the manifest is missing; restore it "
                                "from a backup") from None
    if size != entry.bytes:
        raise _bad(path, f"it is {size} bytes but the manifest says {entry.bytes}")
    try:
        source = pa.memory_map(str(path), "r")
        reader = pa.ipc.open_file(source)
        if not reader.schema.equals(schemas.record_schema(dim)):
            raise _bad(path, f"its schema is not the store's (dim {dim}):\n{reader.schema}")
        table = reader.read_all()
        for batch in table.to_batches():
            batch.validate(full=True)  # offsets and UTF-8 too: no later read may run off a buffer
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise _bad(path, f"Arrow cannot read it ({exc})") from None
    if len(table) != entry.rows:
        raise _bad(path, f"it holds {len(table)} rows but the manifest says {entry.rows}")
    return table


def embedding_matrix(table: pa.Table, dim: int) -> np.ndarray:
    """The embeddings as a (rows, dim) float32 array: a view when the column is one chunk."""
    column = table.column("embedding")
    chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if len(chunk) == 0:
        return np.zeros((0, dim), np.float32)
    flat = chunk.flatten().to_numpy(zero_copy_only=True)
    return flat.reshape(len(chunk), dim)


def _bad(path: Path, why: str) -> CorruptStoreError:
    return CorruptStoreError(f"segment {path} is damaged: {why}; restore it from a backup, or "
                             "remove it from the manifest to open the store without its records")
