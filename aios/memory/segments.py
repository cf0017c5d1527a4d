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
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from aios.memory import schema as schemas
from aios.memory.errors import CorruptStoreError
from aios.memory.files import write_atomic
from aios.memory.manifest import CopyEntry, SegmentEntry

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
    return SegmentEntry(name, len(table), os.path.getsize(directory / name),
                        crc32=file_crc(directory / name))


_COPY_TYPES = {"f16": pa.float16(), "i8": pa.int8()}


def copy_schema(precision: str, dim: int) -> pa.Schema:
    """A lower-precision copy: the vectors (first, aligned) and, for int8, per-row scales."""
    fields = [pa.field("vectors", pa.list_(pa.field("item", _COPY_TYPES[precision],
                                                    nullable=False), dim), nullable=False)]
    if precision == "i8":
        fields.append(pa.field("scale", pa.float32(), nullable=False))
    return pa.schema(fields)


def write_copy(directory: Path, segment: str, precision: str, matrix: np.ndarray,
               scale: np.ndarray | None) -> CopyEntry:
    """Persist a segment's float16 or int8 copy beside it, durably, vectors 64-byte aligned."""
    name = segment.removesuffix(".arrow") + f".{precision}.arrow"
    dim = matrix.shape[1]
    flat = pa.array(matrix.reshape(-1), _COPY_TYPES[precision])
    columns = [pa.FixedSizeListArray.from_arrays(flat, type=copy_schema(precision, dim)[0].type)]
    if scale is not None:
        columns.append(pa.array(scale, pa.float32()))
    table = pa.Table.from_arrays(columns, schema=copy_schema(precision, dim))
    schema = _aligned_schema(table)

    def dump(f: object) -> None:
        with pa.ipc.new_file(f, schema) as writer:
            writer.write_table(table.replace_schema_metadata(schema.metadata))

    write_atomic(directory / name, dump)
    return CopyEntry(precision, name, os.path.getsize(directory / name),
                     crc32=file_crc(directory / name))


def file_crc(path: Path) -> int:
    """CRC-32 of a whole file, read through a memory map (zlib releases the GIL)."""
    return crc_of(pa.memory_map(str(path), "r").read_buffer())


def crc_of(buffer: pa.Buffer) -> int:
    crc = 0
    view = memoryview(buffer)
    for start in range(0, len(view), 64 << 20):
        crc = zlib.crc32(view[start:start + (64 << 20)], crc)
    return crc


def verify(path: Path, mapped: pa.Buffer, expected: int | None) -> None:
    """Check a mapped file against the crc32 its manifest entry records (if it has one)."""
    if expected is not None and crc_of(mapped) != expected:
        raise _bad(path, "its contents fail their checksum (a byte changed on disk)")


def load_copy(directory: Path, entry: CopyEntry, dim: int,
              rows: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Memory-map a persisted copy: (rows, dim) vectors and the int8 scales, checked first."""
    path = directory / entry.file
    try:
        if path.stat().st_size != entry.bytes:
            raise _bad(path, f"it is not the {entry.bytes} bytes the manifest says")
        mapped = pa.memory_map(str(path), "r").read_buffer()
        verify(path, mapped, entry.crc32)
        reader = pa.ipc.open_file(mapped)
        if not reader.schema.remove_metadata().equals(copy_schema(entry.precision, dim)):
            raise _bad(path, "its schema is not that of a copy of this store's vectors")
        table = reader.read_all()
        for batch in table.to_batches():
            batch.validate()
    except FileNotFoundError:
        raise CorruptStoreError(f"{path} listed in the manifest is missing; restore it, or "
                                "remove its entry from the manifest") from None
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise _bad(path, f"Arrow cannot read it ({exc})") from None
    if len(table) != rows:
        raise _bad(path, f"it holds {len(table)} rows, its segment {rows}")
    vectors = table.column("vectors")
    chunk = vectors.chunk(0) if vectors.num_chunks == 1 else vectors.combine_chunks()
    matrix = (chunk.flatten().to_numpy(zero_copy_only=True).reshape(rows, dim) if rows
              else np.zeros((0, dim), chunk.type.value_type.to_pandas_dtype()))
    scale = (table.column("scale").to_numpy() if entry.precision == "i8" else None)
    return matrix, scale


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


def load(directory: Path, entry: SegmentEntry, dim: int) -> tuple[pa.Table, pa.Buffer]:
    """Memory-map a segment and check its structure against its manifest entry before any use.

    Returns the table and the mapped file, whose checksum (`verify`) the store checks on the
    segment's first read rather than here, so opening a large store stays cheap.
    """
    path = directory / entry.file
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CorruptStoreError(f"segment {path} listed in the manifest is missing; restore it "
                                "from a backup") from None
    if size != entry.bytes:
        raise _bad(path, f"it is {size} bytes but the manifest says {entry.bytes}")
    try:
        mapped = pa.memory_map(str(path), "r").read_buffer()
        reader = pa.ipc.open_file(mapped)
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
    return table, mapped


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
