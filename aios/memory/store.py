"""The memory store: records in Arrow, appended durably, searched exactly.

Layout of a store directory::

    MANIFEST.json          which segments and which log are live (replaced atomically)
    seg-GGGGGGGG-NNNN.arrow immutable Arrow IPC files, memory-mapped when opened
    wal-GGGGGGGG.log       the write-ahead log of changes since the last flush
    LOCK                   flock-ed by the one writer

A change is acknowledged once its log frame is fsynced. `flush` (automatic every `flush_rows`
added rows, and on close) writes the logged records into a new segment and a new manifest that
names a new, empty log; `compact` rewrites everything live into fresh segments, applying the
retention policy. Files are written under temporary names and renamed; the manifest is
replaced last, so a crash at any moment leaves the previous or the next state, never a mix.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aios.memory import manifest as manifests
from aios.memory import schema as schemas
from aios.memory import segments, wal
from aios.memory.errors import (
    CorruptStoreError,
    InvalidRecordError,
    RecordNotFoundError,
    StoreError,
)
from aios.memory.files import WriteLock, fsync_dir, remove_temporaries, write_atomic
from aios.memory.filters import Filter
from aios.memory.search import (
    RESCORE_FACTOR,
    Kernel,
    ReferenceKernel,
    SearchResult,
    _merge,
    check_query,
    exact_scores,
)

_KERNEL_METRIC = {"cosine": "cos", "dot": "dot", "l2": "l2"}


@dataclass(frozen=True)
class Retention:
    """What `compact` forgets: records beyond the newest `max_records`, older than
    `max_age_days`, or with a quality below `min_quality` (records without a quality stay)."""

    max_records: int | None = None
    max_age_days: float | None = None
    min_quality: float | None = None

    def __post_init__(self) -> None:
        # Checked here, at the door: a negative value saved in the manifest would make every
        # later plain `compact` forget records nobody asked to forget.
        n = self.max_records
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))
                              or n < 1):
            raise InvalidRecordError(f"max_records must be a positive integer, got {n!r}; "
                                     "delete records to empty a store")
        for name, low in (("max_age_days", 0.0), ("min_quality", None)):
            value = getattr(self, name)
            if value is None:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                    or not math.isfinite(value) or (low is not None and value <= low)
                    or abs(value) > 1e30):
                what = "a positive number of days" if low is not None else "a finite number"
                raise InvalidRecordError(f"{name} must be {what}, got {value!r}")

    @classmethod
    def of(cls, value: Retention | Mapping[str, Any] | None) -> Retention:
        if value is None:
            return cls()
        if isinstance(value, Retention):
            return value
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidRecordError(f"unknown retention keys {sorted(unknown)}; valid keys are "
                                     "max_records, max_age_days, min_quality")
        return cls(**value)

    def keep(self, table: pa.Table, now: datetime) -> np.ndarray:
        keep = np.ones(len(table), bool)
        if self.min_quality is not None:
            quality = pc.struct_field(table.column("metadata"), "quality")
            low = pc.fill_null(pc.less(quality, float(self.min_quality)), False)
            keep &= ~np.asarray(low.to_numpy(zero_copy_only=False), bool)
        if self.max_age_days is not None:
            oldest = pa.scalar(now - timedelta(days=self.max_age_days), schemas.TIMESTAMP_TYPE)
            keep &= np.asarray(pc.greater_equal(table.column("timestamp"), oldest)
                               .to_numpy(zero_copy_only=False), bool)
        if self.max_records is not None and keep.sum() > self.max_records:
            stamps = table.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False)
            candidates = np.flatnonzero(keep)
            newest = candidates[np.argsort(-stamps[candidates], kind="stable")]
            keep[:] = False
            keep[newest[:self.max_records]] = True
        return keep


class Segment:
    """Rows of one segment file (or of the unflushed log) with their deletions and caches."""

    def __init__(self, entry: manifests.SegmentEntry | None, table: pa.Table, dim: int,
                 directory: Path | None = None, mapped: pa.Buffer | None = None) -> None:
        self.entry = entry
        self.dim = dim
        self._batches: list[pa.Table] = [table]
        self._table: pa.Table | None = table
        self.directory = directory
        self.alive = np.ones(len(table), bool)
        if entry is not None:
            self.alive[list(entry.deleted)] = False
        # Caches and first-read checks, shared with this segment's snapshots (`frozen`): a
        # mapped file's checksum is verified on its first read, and its string columns are
        # validated in full on first use beyond vector search (see `table`).
        self._cache: dict[str, Any] = {}
        self._checks = _FirstRead(directory / entry.file if directory and entry else None,
                                  mapped, entry.crc32 if entry else None)

    def frozen(self) -> Segment:
        """A snapshot that later changes to this segment (deletions, appends) do not touch."""
        if self.entry is None:  # the unflushed rows grow: copy them, caches included
            copy = Segment(None, self.table, self.dim)
        else:  # the rows are immutable: share them and their caches
            copy = object.__new__(Segment)
            copy.__dict__.update(self.__dict__)
        copy.alive = self.alive.copy()
        return copy

    @property
    def table(self) -> pa.Table:
        self._checks.full(self._batches[0])
        if self._table is None:
            self._table = pa.concat_tables(self._batches).combine_chunks()
            self._batches = [self._table]
        return self._table

    def __len__(self) -> int:
        return len(self.alive)

    def append(self, batch: pa.RecordBatch) -> None:
        self._batches.append(pa.Table.from_batches([batch]))
        self._table = None
        self._cache.clear()
        self.alive = np.concatenate([self.alive, np.ones(batch.num_rows, bool)])

    def deleted_rows(self) -> tuple[int, ...]:
        return tuple(int(r) for r in np.flatnonzero(~self.alive))

    def matrix(self) -> np.ndarray:
        self._checks.checksum()
        if "f32" not in self._cache:
            # Vectors need no full validation: their buffer size was checked when mapped.
            table = self._table if self._table is not None else self.table
            self._cache["f32"] = segments.embedding_matrix(table, self.dim)
        return self._cache["f32"]

    def quantized(self, precision: str, kernel: Kernel) -> tuple[np.ndarray, np.ndarray | None]:
        """(copy, per-row scale or None) of the vectors at a lower precision, built once."""
        persisted = [c for c in (self.entry.copies if self.entry else ()) if c.precision ==
                     precision]
        if precision not in self._cache and persisted and self.directory is not None:
            self._cache[precision] = segments.load_copy(self.directory, persisted[0], self.dim,
                                                        len(self))
        if precision not in self._cache:
            matrix = self.matrix()
            if precision == "f16":
                self._cache[precision] = (matrix.astype(np.float16), None)
            else:
                self._cache[precision] = kernel.quantize_i8(matrix)
        return self._cache[precision]

    def squared_norms(self) -> np.ndarray:
        """|row|² of every vector (what turns an int8 dot scan into an L2 ranking), built once."""
        if "sq" not in self._cache:
            matrix = self.matrix()
            self._cache["sq"] = np.einsum("ij,ij->i", matrix, matrix).astype(np.float32)
        return self._cache["sq"]

    def locate(self, ids: pa.Array) -> np.ndarray:
        """Rows holding live records with these ids."""
        if not len(self):
            return np.zeros(0, np.int64)
        return np.flatnonzero(schemas.is_in(self.table.column("id"), ids) & self.alive)

    def live_table(self) -> pa.Table:
        if self.alive.all():
            return self.table
        return self.table.filter(pa.array(self.alive))


class _FirstRead:
    """The checks a mapped segment gets once, on first read; thread-safe and shared."""

    def __init__(self, path: Path | None, mapped: pa.Buffer | None, crc32: int | None) -> None:
        self._path = path
        self._mapped = mapped
        self._crc32 = crc32
        self._summed = path is None or mapped is None
        self._validated = path is None
        self._lock = threading.Lock()

    def checksum(self) -> None:
        if self._summed:
            return
        with self._lock:
            if not self._summed:
                assert self._path is not None and self._mapped is not None
                segments.verify(self._path, self._mapped, self._crc32)
                self._summed = True

    def full(self, table: pa.Table) -> None:
        if self._validated:
            return
        self.checksum()
        with self._lock:
            if not self._validated:
                assert self._path is not None
                segments.validate_full(self._path, table)
                self._validated = True


_F = TypeVar("_F")


def _locked(method: _F) -> _F:
    """Run a store method under the store's lock: one change (or read of state) at a time."""

    @functools.wraps(method)  # type: ignore[arg-type]
    def run(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            return method(self, *args, **kwargs)  # type: ignore[operator]

    return run  # type: ignore[return-value]


class MemoryStore:
    """A directory of records with searchable embeddings; see `aios.open_memory`.

    Use it as a context manager (or call `close`): closing flushes the log into a segment and
    releases the write lock.

    One store may be shared by threads (a server's requests): changes, reads of state and
    closing run one at a time under a lock, and a search scans a snapshot taken under the lock
    (segments are immutable; the deletion masks and unflushed rows are copied), so searches run
    in parallel with each other and with writers, and each sees one consistent state.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dim: int | None = None,
        *,
        read_only: bool = False,
        retention: Retention | Mapping[str, Any] | None = None,
        flush_rows: int = 100_000,
        copies: str | Sequence[str] | None = None,
        kernel: Kernel | None = None,
        backend: str = "reference",
    ) -> None:
        self.path = Path(path).expanduser()
        self._mutex = threading.RLock()
        self.backend = backend
        self.read_only = read_only
        if isinstance(flush_rows, bool) or not isinstance(flush_rows, int) or flush_rows < 1:
            raise InvalidRecordError(f"flush_rows must be a positive integer, got {flush_rows!r}")
        self.flush_rows = flush_rows
        wanted_copies = None if copies is None else _precisions(copies)
        self._kernel: Kernel = kernel or ReferenceKernel()
        self._lock: WriteLock | None = None
        self._log: wal.Writer | None = None
        self._closed = False
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} is a file, not a store directory; pass a directory "
                             "path (a new one is created)")
        is_new = not (self.path / manifests.NAME).exists()
        if is_new and read_only:
            raise StoreError(f"{self.path} is not a memory store (no {manifests.NAME}); open it "
                             "without read_only to create one")
        if is_new:
            self._prepare_directory(dim)
        if not read_only:
            self._lock = WriteLock(self.path)
            # Another writer may have created the store between our check and the lock.
            is_new = not (self.path / manifests.NAME).exists()
        try:
            if is_new:
                self._create(schemas.check_dim(dim), Retention.of(retention),
                             wanted_copies or ())
            self._load()
            if dim is not None and schemas.check_dim(dim) != self.dim:
                raise InvalidRecordError(f"the store {self.path} holds {self.dim}-dimensional "
                                         f"vectors, not {dim}; pass dim={self.dim} or omit dim")
            if retention is not None:
                self.retention = Retention.of(retention)
            if wanted_copies is not None:
                self.copies = wanted_copies
            if not read_only:
                self._remove_orphans()
                self._log = wal.Writer(self.path / self._manifest.wal, self._wal_length)
        except BaseException:
            self._release()
            raise

    # -- opening ---------------------------------------------------------------------------

    def _prepare_directory(self, dim: int | None) -> None:
        if dim is None:
            raise InvalidRecordError(f"{self.path} is a new store: pass dim=N (`--dim N` on the "
                                     "command line), the length of the vectors it will hold")
        schemas.check_dim(dim)
        self.path.mkdir(parents=True, exist_ok=True)
        foreign = [p.name for p in self.path.iterdir()
                   if p.name != "LOCK" and not p.name.startswith((".", "wal-", "seg-"))]
        if foreign:
            raise StoreError(f"{self.path} is a non-empty directory that is not a memory store "
                             f"(it holds {', '.join(sorted(foreign)[:3])}); choose an empty or "
                             "new directory")

    def _create(self, dim: int, retention: Retention, copies: tuple[str, ...]) -> None:
        """Write generation 0 under the lock: an empty log, then the manifest naming it."""
        manifest = manifests.Manifest(dim, 0, (), _retention_dict(retention), copies)
        wal.create(self.path / manifest.wal)
        fsync_dir(self.path)
        manifests.write(self.path, manifest)

    def _load(self) -> None:
        # A writer may replace the manifest and delete the files it named between our reads;
        # then the files we want are gone and a fresh manifest names the new ones: try again.
        for attempt in range(20):
            try:
                self._manifest = manifests.read(self.path)
                self.dim = self._manifest.dim
                self.retention = _stored_retention(self.path, self._manifest.retention)
                self.copies = self._manifest.copies
                self._segments = [self._open_segment(e) for e in self._manifest.segments]
                entries, self._wal_length = wal.read(self.path / self._manifest.wal)
                break
            except (FileNotFoundError, CorruptStoreError):
                if attempt == 19 or not self.read_only or not self._manifest_moved_on():
                    if not (self.path / manifests.NAME).exists():
                        raise StoreError(f"{self.path} is not a memory store (no "
                                         f"{manifests.NAME})") from None
                    raise
        self._pending = Segment(None, schemas.empty_table(self.dim), self.dim)
        self._changed_segments = False  # deletions in flushed segments the manifest lacks
        for entry in entries:
            self._apply(entry.kind, entry.batch)

    def _manifest_moved_on(self) -> bool:
        """Whether a writer replaced the manifest since we read it (then a retry can succeed;
        otherwise the damage is real and retrying only delays the error)."""
        read = getattr(self, "_manifest", None)
        try:
            return read is None or manifests.read(self.path).generation != read.generation
        except (FileNotFoundError, CorruptStoreError):
            return False  # the manifest is replaced by rename, never seen half-written

    def _open_segment(self, entry: manifests.SegmentEntry) -> Segment:
        table, mapped = segments.load(self.path, entry, self.dim)
        return Segment(entry, table, self.dim, self.path, mapped)

    def _remove_orphans(self) -> None:
        """Files a killed writer left behind that the manifest does not name."""
        live = {f for s in self._manifest.segments for f in s.files()} | {self._manifest.wal}
        remove_temporaries(self.path)
        for path in self.path.iterdir():
            if path.name.startswith(("seg-", "wal-")) and path.name not in live:
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- writing ---------------------------------------------------------------------------

    @_locked
    def add(self, records: Any = None, **columns: Any) -> list[str]:
        """Store records and return their ids (generated where not given).

        `records` is a pyarrow Table/RecordBatch, a dict, or a list of dicts; or pass
        ``embeddings=`` (one vector or a 2-D array) with optional ``contents, ids, modality,
        category, source, quality, extra, timestamps``. Ids already in the store are refused:
        use `update` to replace a record.
        """
        self._writable()
        batch = schemas.to_batch(records, dim=self.dim, **columns)
        taken = self._live_ids(batch.column("id"))
        if taken:
            raise InvalidRecordError(f"id {taken[0]!r} is already in the store ({len(taken)} of "
                                     "the given ids are); use update() to replace records")
        self._log_and_apply(wal.ADD, batch)
        return schemas.take_ids(batch)

    @_locked
    def update(self, records: Any = None, **columns: Any) -> list[str]:
        """Replace existing records (matched by id) with new versions, atomically."""
        self._writable()
        batch = schemas.to_batch(records, dim=self.dim, **columns)
        ids = schemas.take_ids(batch)
        found = set(self._live_ids(batch.column("id")))
        missing = [i for i in ids if i not in found]
        if missing:
            raise RecordNotFoundError(f"cannot update {len(missing)} id(s) the store does not "
                                      f"hold, e.g. {missing[0]!r}; use add() for new records")
        self._log_and_apply(wal.UPDATE, batch)
        return ids

    @_locked
    def delete(self, ids: str | Sequence[str]) -> int:
        """Delete records by id; returns how many were live (unknown ids are ignored)."""
        self._writable()
        array = schemas.ids_array(ids)
        count = len(self._live_ids(array))
        if not count:
            return 0
        self._log_and_apply(wal.DELETE, pa.RecordBatch.from_arrays([array], names=["id"]))
        return count

    def _log_and_apply(self, kind: int, batch: pa.RecordBatch) -> None:
        assert self._log is not None
        self._log.append(kind, batch)  # durable from here on
        self._apply(kind, batch)
        if len(self._pending) >= self.flush_rows:
            self.flush()

    def _apply(self, kind: int, batch: pa.RecordBatch) -> None:
        if kind in (wal.DELETE, wal.UPDATE):
            ids = batch.column("id")
            for segment in self._all_segments():
                rows = segment.locate(ids)
                if len(rows):
                    segment.alive[rows] = False
                    self._changed_segments |= segment is not self._pending
        if kind in (wal.ADD, wal.UPDATE):
            if batch.schema != schemas.record_schema(self.dim):
                raise CorruptStoreError(f"the write-ahead log of {self.path} holds records of "
                                        f"another schema:\n{batch.schema}")
            self._pending.append(batch)

    @_locked
    def flush(self) -> None:
        """Move the logged changes into a new segment file (the log then starts empty)."""
        self._writable()
        if not len(self._pending) and not self._changed_segments:
            return
        generation = self._manifest.generation + 1
        entries = [replace(s.entry, deleted=s.deleted_rows())
                   for s in self._segments if s.entry is not None]
        new = self._pending.live_table()
        if len(new):
            entries.append(self._write_segment(generation, new))
        self._switch(generation, entries)

    @_locked
    def compact(self, retention: Retention | Mapping[str, Any] | None = None) -> dict[str, int]:
        """Rewrite every live record into one segment, dropping what `retention` forgets.

        Uses the store's retention policy unless one is given (which then becomes the store's).
        Returns counts before and after.
        """
        self._writable()
        if retention is not None:
            self.retention = Retention.of(retention)
        before = self.count()
        table = self.to_table()
        keep = self.retention.keep(table, datetime.now(timezone.utc))
        table = table.filter(pa.array(keep))
        generation = self._manifest.generation + 1
        entries = []
        if len(table):
            entries.append(self._write_segment(generation, table))
        old = [f for s in self._segments if s.entry is not None for f in s.entry.files()]
        self._switch(generation, entries)
        for name in old:
            with contextlib.suppress(OSError):
                (self.path / name).unlink()
        return {"before": before, "after": len(table), "dropped": before - len(table)}

    def _write_segment(self, generation: int, table: pa.Table) -> manifests.SegmentEntry:
        """A new segment file and, per the store's `copies`, its lower-precision copies."""
        entry = segments.write(self.path, manifests.segment_name(generation), table)
        if not self.copies:
            return entry
        segment = Segment(entry, segments.load(self.path, entry, self.dim)[0], self.dim)
        copies = tuple(segments.write_copy(self.path, entry.file, precision,
                                           *segment.quantized(precision, self._kernel))
                       for precision in self.copies)
        return replace(entry, copies=copies)

    def _switch(self, generation: int, entries: list[manifests.SegmentEntry]) -> None:
        """Start a new log, then make the new manifest current: the one atomic step."""
        wal.create(self.path / manifests.wal_name(generation))
        fsync_dir(self.path)
        manifest = manifests.Manifest(self.dim, generation, tuple(entries),
                                      _retention_dict(self.retention), self.copies)
        manifests.write(self.path, manifest)
        old_log = self.path / self._manifest.wal
        assert self._log is not None
        self._log.close()
        with contextlib.suppress(OSError):
            old_log.unlink()
        self._manifest = manifest
        self._log = wal.Writer(self.path / manifest.wal, len(wal.MAGIC))
        kept = {s.entry.file: s for s in self._segments if s.entry is not None}
        self._segments = []
        for entry in entries:
            segment = kept.get(entry.file)
            if segment is None:
                segment = self._open_segment(entry)
            else:
                segment.entry = entry
            self._segments.append(segment)
        self._pending = Segment(None, schemas.empty_table(self.dim), self.dim)
        self._changed_segments = False

    # -- reading ---------------------------------------------------------------------------

    @_locked
    def count(self) -> int:
        """How many live records the store holds."""
        return int(sum(s.alive.sum() for s in self._all_segments()))

    def __len__(self) -> int:
        return self.count()

    @_locked
    def get(self, ids: str | Sequence[str]) -> pa.Table:
        """The records with these ids, in the order asked; unknown ids raise."""
        self._open()
        array = schemas.ids_array(ids)
        parts = [s.table.take(pa.array(rows)) for s in self._all_segments()
                 if len(rows := s.locate(array))]
        found = pa.concat_tables(parts) if parts else schemas.empty_table(self.dim)
        position = {value: i for i, value in enumerate(schemas.take_ids(found))}
        wanted = array.to_pylist()
        missing = [i for i in wanted if i not in position]
        if missing:
            raise RecordNotFoundError(f"{len(missing)} id(s) not in the store, e.g. "
                                      f"{missing[0]!r}")
        return found.take(pa.array([position[i] for i in wanted], pa.int64()))

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self.batches()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every live record, as Arrow record batches (one or more per segment), from the
        snapshot of the moment iteration starts."""
        for segment in self._snapshot():
            if segment.alive.any():
                yield from segment.live_table().to_batches()

    def to_table(self) -> pa.Table:
        """Every live record in one table (zero-copy where nothing was deleted)."""
        batches = list(self.batches())
        return (pa.Table.from_batches(batches, schemas.record_schema(self.dim)) if batches
                else schemas.empty_table(self.dim))

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every live record to a Parquet file (atomically); returns the record count."""
        target = Path(path).expanduser()
        count = 0

        def dump(f: Any) -> None:
            nonlocal count
            with pq.ParquetWriter(f, schemas.record_schema(self.dim)) as writer:
                for batch in self.batches():
                    writer.write_batch(batch)
                    count += batch.num_rows

        write_atomic(target, dump)
        return count

    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        metric: str = "cosine",
        filter: Filter | Mapping[str, Any] | None = None,
        threshold: float | None = None,
        precision: str = "f32",
    ) -> SearchResult | list[SearchResult]:
        """The `k` records nearest `query` (one vector), or a list of results for a 2-D batch.

        `metric`: "cosine" (default), "dot" or "l2" (squared distance, lower is closer).
        `filter`: a `Filter` or dict (modality, category, source, since, until, min_quality),
        applied before ranking. `threshold`: the least similarity (or, for l2, the largest
        distance) a result may have. `precision`: "f32" scans the exact vectors; "f16" and "i8"
        scan a smaller copy and re-score the best candidates exactly in float32.
        """
        queries = check_query(query, self.dim, metric, k, precision)
        chosen = Filter.of(filter)
        snapshot = self._snapshot()
        # k beyond the number of rows asks for nothing more; capping it here keeps a huge k
        # from reaching a kernel (the native one allocates k slots per query).
        k = min(int(k), max(sum(len(s) for s in snapshot), 1))
        kernel_threshold = None
        if threshold is not None:
            if not np.isfinite(threshold):
                raise InvalidRecordError(f"threshold must be finite, got {threshold!r}")
            kernel_threshold = -float(threshold) if metric == "l2" else float(threshold)
        nq = len(queries)
        best_rows = np.full((nq, 0), -1, np.int64)
        best_scores = np.full((nq, 0), -np.inf, np.float32)
        owners: list[Segment] = []
        for segment in snapshot:
            if not len(segment):
                continue
            mask = self._mask(segment, chosen)
            if mask is not None and not mask.any():
                continue
            rows, scores = self._search_segment(segment, queries, int(k), metric, mask,
                                                kernel_threshold, precision)
            # Encode (segment, row) as one int64 so merging keeps the origin.
            rows = np.where(rows >= 0, rows + (len(owners) << 40), -1)
            owners.append(segment)
            best_rows, best_scores = _merge(best_rows, best_scores, rows, scores, int(k))
        results = [self._result(owners, r, s, metric) for r, s in zip(best_rows, best_scores,
                                                                        strict=True)]
        return results[0] if np.ndim(query) == 1 else results

    def _mask(self, segment: Segment, chosen: Filter | None) -> np.ndarray | None:
        if chosen is None:
            return None if segment.alive.all() else segment.alive
        return chosen.mask(segment.table) & segment.alive

    def _search_segment(self, segment, queries, k, metric, mask, threshold, precision):
        kernel_metric = _KERNEL_METRIC[metric]
        k = min(k, len(segment))
        if precision == "f32":
            return self._kernel.top_k(segment.matrix(), queries, k, kernel_metric, mask=mask,
                                      threshold=threshold)
        copy, scale = segment.quantized(precision, self._kernel)
        candidates = min(max(k * RESCORE_FACTOR, 64), len(segment))
        if precision == "i8":
            peak = np.abs(queries).max(axis=1, keepdims=True)
            q_scale = np.where(peak > 0, peak / 127.0, 1.0)
            coded = np.rint(queries / q_scale).clip(-127, 127).astype(np.int8)
        else:
            coded = queries.astype(np.float16)
        if metric == "l2" and scale is not None:
            # -(|x|^2 - 2 x.q) ranks like -|x - q|^2, and x.q ~ codes.q_codes * scale * q_scale:
            # the scale differs per query, so each query is its own scan.
            rows = np.concatenate([
                self._kernel.top_k(copy, coded[i:i + 1], candidates, "dot", mask=mask,
                                   scale=scale * np.float32(2 * q_scale[i, 0]),
                                   bias=-segment.squared_norms())[0]
                for i in range(len(queries))])
        else:
            # One scan for the whole batch: a per-query factor does not change a ranking.
            rows, _ = self._kernel.top_k(copy, coded, candidates,
                                         "dot" if metric == "dot" else kernel_metric,
                                         mask=mask, scale=scale if metric == "dot" else None)
        out_rows = np.full((len(queries), k), -1, np.int64)
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        matrix = segment.matrix()
        for i, found in enumerate(rows):
            found = found[found >= 0]
            exact = exact_scores(matrix[found], queries[i], metric)
            if threshold is not None:
                found, exact = found[exact >= threshold], exact[exact >= threshold]
            order = np.argsort(-exact, kind="stable")[:k]
            out_rows[i, :len(order)] = found[order]
            out_scores[i, :len(order)] = exact[order]
        return out_rows, out_scores

    def _result(self, owners: list[Segment], rows: np.ndarray, scores: np.ndarray,
                metric: str) -> SearchResult:
        valid = rows >= 0
        rows, scores = rows[valid], scores[valid]
        if metric == "l2":
            scores = np.maximum(-scores, 0.0)
        parts = []
        for index, segment in enumerate(owners):
            mine = (rows >> 40) == index
            if mine.any():
                parts.append((np.flatnonzero(mine),
                              segment.table.take(pa.array(rows[mine] & ((1 << 40) - 1)))))
        if parts:
            order = np.concatenate([p[0] for p in parts])
            table = pa.concat_tables([p[1] for p in parts])
            table = table.take(pa.array(np.argsort(order, kind="stable")))
        else:
            table = schemas.empty_table(self.dim)
        return SearchResult(schemas.take_ids(table), scores.astype(np.float32), table)

    # -- state -----------------------------------------------------------------------------

    @_locked
    def stats(self) -> dict[str, Any]:
        """Counts, sizes and settings, for `aios memory stats`."""
        self._open()
        files = [p for p in self.path.iterdir() if p.is_file()]
        return {
            "path": str(self.path),
            "backend": self.backend,
            "dim": self.dim,
            "records": self.count(),
            "segments": len(self._segments),
            "unflushed_records": int(self._pending.alive.sum()),
            "deleted_rows": int(sum((~s.alive).sum() for s in self._all_segments())),
            "generation": self._manifest.generation,
            "bytes_on_disk": sum(p.stat().st_size for p in files),
            "retention": _retention_dict(self.retention),
            "copies": list(self.copies),
            "read_only": self.read_only,
        }

    @_locked
    def close(self) -> None:
        """Flush the log into a segment (writers) and release files; idempotent."""
        if self._closed:
            return
        try:
            if not self.read_only and self._log is not None:
                self.flush()
        finally:
            self._release()

    def _release(self) -> None:
        self._closed = True
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.count()} records"
        return f"<MemoryStore {self.backend} {self.path} dim={self.dim} {state}>"

    def _snapshot(self) -> list[Segment]:
        """The segments as they are now, safe to read while other threads change the store."""
        with self._mutex:
            self._open()
            return [s.frozen() for s in self._all_segments()]

    def _all_segments(self) -> list[Segment]:
        return [*self._segments, self._pending]

    def _live_ids(self, ids: pa.Array) -> list[str]:
        found: list[str] = []
        for segment in self._all_segments():
            rows = segment.locate(ids)
            if len(rows):
                found += segment.table.column("id").take(pa.array(rows)).to_pylist()
        return found

    def _open(self) -> None:
        if self._closed:
            raise StoreError(f"the memory store {self.path} is closed; open it again")

    def _writable(self) -> None:
        self._open()
        if self.read_only:
            raise StoreError(f"the memory store {self.path} is open read-only; open it without "
                             "read_only=True to change it (one writer at a time)")


def _precisions(copies: str | Sequence[str]) -> tuple[str, ...]:
    """`"i8,f16"` or `["i8"]` as a checked tuple of precisions to persist beside segments."""
    names = [c.strip() for c in copies.split(",")] if isinstance(copies, str) else list(copies)
    names = [c for c in names if c]
    unknown = [c for c in names if c not in manifests.PRECISIONS]
    if unknown:
        raise InvalidRecordError(f"copies {unknown!r} are unknown; persist any of "
                                 f"{', '.join(manifests.PRECISIONS)} (e.g. copies='i8')")
    return tuple(dict.fromkeys(names))


def _stored_retention(path: Path, value: dict[str, Any]) -> Retention:
    try:
        return Retention.of(value)
    except (InvalidRecordError, TypeError) as exc:
        raise CorruptStoreError(
            f"the manifest of {path} holds an invalid retention policy ({exc}); run `aios "
            f"memory recover {path}` to clear it, then set a valid one") from None


def _retention_dict(retention: Retention) -> dict[str, Any]:
    return {k: v for k, v in asdict(retention).items() if v is not None}
