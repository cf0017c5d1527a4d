"""Immutable Arrow IPC segment files: written once (temp + fsync + rename), memory-mapped to read.

Opening a segment copies nothing: the table's buffers point into the mapped file, and the
embedding column becomes a NumPy (rows, dim) view that the search kernels read in place.

On disk the embedding column comes first and the schema carries a padding entry sized so that
the vectors start on a 64-byte boundary of the file (pyarrow pads IPC buffers to 8 bytes only):
mapped at a page boundary, SIMD loads never straddle a cache line. Columns are put back in the
record order when the file is opened, which costs nothing.
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

ALIGNMENT = 64
_PAD_KEY = b"aios.align"


def disk_schema(dim: int) -> pa.Schema:
    """The record schema with the embedding column first (where it can be aligned)."""
    records = schemas.record_schema(dim)
    return pa.schema([records.field("embedding"),
                      *(f for f in records if f.name != "embedding")])


def write(directory: Path, name: str, table: pa.Table) -> SegmentEntry:
    """Write `table` as one record batch in the Arrow IPC file format, durably."""
    on_disk = table.select(disk_schema(schemas.dim_of(table.schema)).names).combine_chunks()
    schema = _aligned_schema(on_disk)

    def dump(f: object) -> None:
        with pa.ipc.new_file(f, schema) as writer:
            writer.write_table(on_disk.replace_schema_metadata(schema.metadata))

    write_atomic(directory / name, dump)
    return SegmentEntry(name, len(table), os.path.getsize(directory / name))


def _aligned_schema(table: pa.Table) -> pa.Schema:
    """The schema with a padding entry that puts the vectors at a 64-byte file offset.

    The offset depends only on the sizes of the schema and batch headers, not on the data, so
    a one-row probe finds the padding.
    """
    probe = table.slice(0, 1)
    for pad in range(0, 2 * ALIGNMENT, 8):
        schema = table.schema.with_metadata({_PAD_KEY: b" " * pad})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(probe.replace_schema_metadata(schema.metadata))
        buffer = sink.getvalue()
        batch = pa.ipc.open_file(buffer).get_batch(0)
        values = batch.column(0).values.buffers()[1]
        if (values.address - buffer.address) % ALIGNMENT == 0:
            return schema
    return table.schema  # not reachable with pyarrow's 8-byte padding; unaligned still works


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
        if not reader.schema.remove_metadata().equals(disk_schema(dim)):
            raise _bad(path, f"its schema is not the store's (dim {dim}):\n{reader.schema}")
        table = reader.read_all()
        table = table.select(schemas.record_schema(dim).names).replace_schema_metadata(None)
        for batch in table.to_batches():
            batch.validate()  # buffer sizes against lengths; `validate_full` checks contents
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise _bad(path, f"Arrow cannot read it ({exc})") from None
    if len(table) != entry.rows:
        raise _bad(path, f"it holds {len(table)} rows but the manifest says {entry.rows}")
    return table


def validate_full(path: Path, table: pa.Table) -> None:
    """Check every offset and UTF-8 string, so no read of a string column runs off a buffer.

    This costs a pass over the string columns, so the store runs it on a segment's first use
    beyond vector search (which reads only the fixed-size vectors, checked at open) rather than
    at open.
    """
    try:
        for batch in table.to_batches():
            batch.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise _bad(path, f"its content is inconsistent ({exc})") from None


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
