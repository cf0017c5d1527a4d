"""The record schema, and turning what a caller passes into one checked Arrow record batch.

Every path into the store (Python lists, NumPy arrays, pyarrow tables, the CLI) goes through
`to_batch`, so validation lives in one place: a record that reaches the write-ahead log is
already known to have the right dimension, finite values and a unique id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aios.memory.errors import InvalidRecordError

#: Modalities a record may have; `content` holds text, or a caption/URI for the others.
MODALITIES = ("text", "code", "image", "audio", "video", "other")

METADATA_TYPE = pa.struct([
    pa.field("category", pa.string()),
    pa.field("source", pa.string()),
    pa.field("quality", pa.float32()),
    pa.field("extra", pa.string()),  # free-form JSON object, as text
])

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")


def record_schema(dim: int) -> pa.Schema:
    """The Arrow schema of a store whose embeddings have `dim` dimensions."""
    return pa.schema([
        pa.field("id", pa.string(), nullable=False),
        pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("content", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.field("item", pa.float32(), nullable=False), dim),
                 nullable=False),
        pa.field("metadata", METADATA_TYPE, nullable=False),
    ])


def dim_of(schema_: pa.Schema) -> int:
    """The embedding dimension a schema declares."""
    return schema_.field("embedding").type.list_size


#: The largest magnitude of a vector component. Squared distances and the products of squared
#: norms (cosine) of 65536-dimensional vectors within it stay far below float32's maximum (3.4e38),
#: so every metric is finite on every backend (at 1e15, native cosine overflowed).
MAX_COMPONENT = 1e6


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= 65536:
        raise InvalidRecordError(
            f"dim must be an integer between 1 and 65536, got {dim!r}; pass the length of your "
            "embedding vectors")
    return int(dim)


def vectors(values: Any, dim: int, what: str = "embedding") -> np.ndarray:
    """A C-contiguous float32 (n, dim) array of finite values, or a clear error."""
    try:
        array = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidRecordError(f"{what} is not numeric: {exc}; pass floats") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        shape = "x".join(str(s) for s in np.shape(values))
        raise InvalidRecordError(
            f"{what} has shape ({shape}) but this store holds {dim}-dimensional vectors; pass "
            f"vectors of length {dim} (or open a new store with dim={array.shape[-1]})")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise InvalidRecordError(
            f"{what} row {row} holds NaN or infinity; replace or drop that vector")
    inside = (np.abs(array) <= MAX_COMPONENT).all(axis=1)
    if not inside.all():
        row = int(np.argmin(inside))
        raise InvalidRecordError(
            f"{what} row {row} has a component beyond ±{MAX_COMPONENT:.0e}, where float32 "
            "distances overflow; scale the vectors down (normalising them is usual)")
    return np.ascontiguousarray(array)


def to_batch(
    records: Any = None,
    *,
    dim: int,
    embeddings: Any = None,
    contents: Any = None,
    ids: Any = None,
    modality: str | Sequence[str] = "text",
    category: str | Sequence[str | None] | None = None,
    source: str | Sequence[str | None] | None = None,
    quality: float | Sequence[float | None] | None = None,
    extra: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    timestamps: Any = None,
) -> pa.RecordBatch:
    """Build a checked record batch from `records` or from column keywords.

    `records` is a pyarrow Table/RecordBatch with the store's columns (`id`, `timestamp` and
    `metadata` may be missing), a mapping for one record, or a sequence of mappings with keys
    ``embedding, content, id, modality, category, source, quality, extra, timestamp``.
    Otherwise `embeddings` (one vector or a 2-D array) and the other keywords give the columns.
    """
    if records is not None:
        if embeddings is not None:
            raise InvalidRecordError("pass either records or embeddings=..., not both")
        if isinstance(records, (pa.Table, pa.RecordBatch)):
            return _from_arrow(records, dim)
        if isinstance(records, Mapping):
            records = [records]
        if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
            raise InvalidRecordError(
                f"records must be a pyarrow table, a dict or a list of dicts, got "
                f"{type(records).__name__}")
        return _from_dicts(records, dim)
    if embeddings is None:
        raise InvalidRecordError("no records given: pass records or embeddings=...")
    matrix = vectors(embeddings, dim)
    n = len(matrix)
    return _assemble(
        dim, matrix,
        ids=_column(ids, n, "ids"),
        contents=_column(contents, n, "contents"),
        modalities=_column(modality, n, "modality"),
        categories=_column(category, n, "category"),
        sources=_column(source, n, "source"),
        qualities=_column(quality, n, "quality"),
        extras=_column(extra, n, "extra", scalar_types=(Mapping,)),
        timestamps=_column(timestamps, n, "timestamps", scalar_types=(datetime,)),
    )


def _column(value: Any, n: int, name: str, scalar_types: tuple[type, ...] = ()) -> list[Any]:
    if value is None or isinstance(value, (str, int, float, *scalar_types)):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise InvalidRecordError(f"{name} has {len(values)} entries for {n} embeddings; pass one "
                                 "per embedding (or a single value for all)")
    return values


_RECORD_KEYS = {"embedding", "content", "id", "modality", "category", "source", "quality",
                "extra", "timestamp", "metadata"}


def _from_dicts(records: Sequence[Any], dim: int) -> pa.RecordBatch:
    if not records:
        raise InvalidRecordError("no records given: the list is empty")
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InvalidRecordError(f"record {i} is a {type(record).__name__}, not a dict")
        unknown = set(record) - _RECORD_KEYS
        if unknown:
            raise InvalidRecordError(
                f"record {i} has unknown keys {sorted(unknown)}; valid keys are "
                f"{', '.join(sorted(_RECORD_KEYS))}")
        if "embedding" not in record:
            raise InvalidRecordError(f"record {i} has no 'embedding'")
    meta = [{**dict(r.get("metadata") or {}), **{k: r[k] for k in
             ("category", "source", "quality", "extra") if k in r}} for r in records]
    return _assemble(
        dim, vectors([r["embedding"] for r in records], dim),
        ids=[r.get("id") for r in records],
        contents=[r.get("content") for r in records],
        modalities=[r.get("modality", "text") for r in records],
        categories=[m.get("category") for m in meta],
        sources=[m.get("source") for m in meta],
        qualities=[m.get("quality") for m in meta],
        extras=[m.get("extra") for m in meta],
        timestamps=[r.get("timestamp") for r in records],
    )


def _from_arrow(data: pa.Table | pa.RecordBatch, dim: int) -> pa.RecordBatch:
    names = set(data.schema.names)
    if "embedding" not in names:
        raise InvalidRecordError("the table has no 'embedding' column")
    unknown = names - set(record_schema(dim).names)
    if unknown:
        raise InvalidRecordError(f"the table has unknown columns {sorted(unknown)}; valid "
                                 f"columns are {', '.join(record_schema(dim).names)}")
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    embedding = table.column("embedding").combine_chunks()
    if pa.types.is_fixed_size_list(embedding.type) or pa.types.is_list(embedding.type):
        flat = embedding.flatten().to_numpy(zero_copy_only=False)
        width = flat.size // max(len(embedding), 1)
        if embedding.null_count or flat.size != width * len(embedding):
            raise InvalidRecordError("the embedding column has null or ragged vectors")
        matrix = vectors(flat.reshape(len(embedding), width), dim)
    else:
        raise InvalidRecordError(f"the embedding column is {embedding.type}, not a list of floats")
    n = len(table)

    def col(name: str, default: Any = None) -> list[Any]:
        return table.column(name).to_pylist() if name in names else [default] * n

    meta = col("metadata", {})
    meta = [m or {} for m in meta]
    return _assemble(
        dim, matrix, ids=col("id"), contents=col("content"), modalities=col("modality", "text"),
        categories=[m.get("category") for m in meta], sources=[m.get("source") for m in meta],
        qualities=[m.get("quality") for m in meta], extras=[m.get("extra") for m in meta],
        timestamps=col("timestamp"),
    )


def _assemble(dim: int, matrix: np.ndarray, *, ids: list[Any], contents: list[Any],
              modalities: list[Any], categories: list[Any], sources: list[Any],
              qualities: list[Any], extras: list[Any], timestamps: list[Any]) -> pa.RecordBatch:
    n = len(matrix)
    ids = [uuid.uuid4().hex if i is None else i for i in ids]
    for i, value in enumerate(ids):
        if not isinstance(value, str) or not value or len(value) > 512:
            raise InvalidRecordError(f"id of record {i} is {value!r}; ids are non-empty strings "
                                     "of at most 512 characters (or None to generate one)")
    if len(set(ids)) != n:
        seen: set[str] = set()
        dup = next(x for x in ids if x in seen or seen.add(x))  # type: ignore[func-returns-value]
        raise InvalidRecordError(f"id {dup!r} appears twice in the records; ids are unique")
    for i, m in enumerate(modalities):
        if m not in MODALITIES:
            raise InvalidRecordError(f"modality of record {i} is {m!r}; use one of "
                                     f"{', '.join(MODALITIES)}")
    contents = ["" if c is None else c for c in contents]
    for i, c in enumerate(contents):
        if not isinstance(c, str):
            raise InvalidRecordError(f"content of record {i} is a {type(c).__name__}; pass text")
    for i, q in enumerate(qualities):
        if q is not None and (isinstance(q, bool) or not isinstance(q, (int, float))
                              or not np.isfinite(q) or abs(q) > _FLOAT32_MAX):
            raise InvalidRecordError(f"quality of record {i} is {q!r}; pass a finite number "
                                     "within float32's range (±3.4e38)")
    extras_text = []
    for i, e in enumerate(extras):
        if isinstance(e, str):
            try:
                e = json.loads(e)
            except ValueError:
                raise InvalidRecordError(f"extra of record {i} is not valid JSON") from None
        if e is not None and not isinstance(e, Mapping):
            raise InvalidRecordError(f"extra of record {i} must be a JSON object (a dict)")
        try:
            extras_text.append(None if e is None else json.dumps(e, sort_keys=True,
                                                                 allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidRecordError(f"extra of record {i} is not JSON-serialisable: {exc}") \
                from None
    now = datetime.now(timezone.utc)
    stamps = [now if t is None else t for t in timestamps]
    try:
        stamp_array = pa.array(stamps, type=TIMESTAMP_TYPE)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise InvalidRecordError(f"timestamps must be datetimes: {exc}") from None
    metadata = pa.StructArray.from_arrays(
        [pa.array(categories, pa.string()), pa.array(sources, pa.string()),
         pa.array(qualities, pa.float32()), pa.array(extras_text, pa.string())],
        fields=list(METADATA_TYPE),
    )
    embedding = pa.FixedSizeListArray.from_arrays(
        pa.array(matrix.reshape(-1), pa.float32()), type=record_schema(dim).field("embedding").type)
    try:
        return pa.RecordBatch.from_arrays(
            [pa.array(ids, pa.string()), stamp_array, pa.array(modalities, pa.string()),
             pa.array(contents, pa.string()), embedding, metadata],
            schema=record_schema(dim),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidRecordError(f"records do not fit the schema: {exc}") from None


def ids_array(ids: Any) -> pa.Array:
    """Ids a caller asks for (one string or many) as a checked Arrow string array."""
    if isinstance(ids, str):
        ids = [ids]
    values = list(ids)
    if not all(isinstance(i, str) for i in values):
        raise InvalidRecordError("ids must be strings")
    return pa.array(values, pa.string())


def take_ids(table: pa.Table | pa.RecordBatch) -> list[str]:
    return table.column("id").to_pylist()


def empty_table(dim: int) -> pa.Table:
    return record_schema(dim).empty_table()


def is_in(column: pa.Array | pa.ChunkedArray, values: pa.Array) -> np.ndarray:
    """Boolean mask of the rows of `column` whose value is in `values`."""
    return pc.is_in(column, value_set=values).to_numpy(zero_copy_only=False)
