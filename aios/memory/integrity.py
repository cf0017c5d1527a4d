"""Checking a store in full, and recovering what verifies from a damaged one.

`check` is the store's ``integrity_check`` (after SQLite's): where opening a store checks
structure and a first read checks a segment's checksum, `check` reads everything now: the
manifest, every segment and copy against its size, checksum and Arrow structure, every log
frame, and that no id is live twice. It changes nothing.

`recover` is what to do when `check` (or opening) reports damage: it keeps every segment that
verifies and every log frame that verifies (frames after a damaged stretch are found again by
their header checksums), moves the damaged files into ``damaged-<time>/`` inside the store (so
nothing is deleted), and writes a new generation naming what was kept. Records in a damaged
segment are lost: the report counts them, and a backup is the way to get them back.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from aios.memory import manifest as manifests
from aios.memory import segments, wal
from aios.memory.errors import CorruptStoreError, StoreError
from aios.memory.files import WriteLock, fsync_dir

__all__ = ["CheckReport", "RecoveryReport", "check", "recover"]


@dataclass
class CheckReport:
    """What `check` read and what failed (empty `problems`: the store is intact)."""

    path: Path
    segments: int = 0
    records: int = 0
    log_frames: int = 0
    unchecked: list[str] = field(default_factory=list)  # files without a stored checksum
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class RecoveryReport:
    """What `recover` kept, dropped and moved aside."""

    path: Path
    kept_segments: int = 0
    dropped_segments: list[str] = field(default_factory=list)
    records_lost: int = 0
    dropped_copies: list[str] = field(default_factory=list)
    log_frames_kept: int = 0
    log_damage: str | None = None
    retention_cleared: bool = False
    moved_to: Path | None = None

    @property
    def changed(self) -> bool:
        return bool(self.dropped_segments or self.dropped_copies or self.log_damage
                    or self.retention_cleared)


def check(path: str | os.PathLike[str]) -> CheckReport:
    """Read and verify every file of the store at `path`; see the module docstring."""
    directory = Path(path).expanduser()
    report = CheckReport(directory)
    if not (directory / manifests.NAME).is_file():
        raise StoreError(f"{directory} is not a memory store (no {manifests.NAME})")
    try:
        manifest = manifests.read(directory)
    except CorruptStoreError as exc:
        report.problems.append(str(exc))
        return report
    _check_retention(manifest, report)
    ids: list[pa.Array] = []
    for entry in manifest.segments:
        report.segments += 1
        problem = _segment_problem(directory, entry, manifest.dim, report, ids)
        if problem:
            report.problems.append(problem)
    try:
        scan = wal.scan(directory / manifest.wal)
        report.log_frames = len(scan.entries)
        if scan.damage is not None:
            report.problems.append(str(wal._damaged(directory / manifest.wal,
                                                    scan.damage.offset, scan.damage.why)))
    except CorruptStoreError as exc:
        report.problems.append(str(exc))
    _check_unique_ids(ids, report)
    return report


def _check_retention(manifest: manifests.Manifest, report: CheckReport) -> None:
    from aios.memory.store import Retention

    try:
        Retention.of(manifest.retention)
    except (ValueError, TypeError) as exc:
        report.problems.append(f"the manifest's retention policy is invalid ({exc})")


def _segment_problem(directory: Path, entry: manifests.SegmentEntry, dim: int,
                     report: CheckReport | None, ids: list[pa.Array]) -> str | None:
    """Why the segment (or one of its copies) fails, or None when every check passes."""
    try:
        table, mapped = segments.load(directory, entry, dim)
        segments.verify(directory / entry.file, mapped, entry.crc32)
        segments.validate_full(directory / entry.file, table)
        for copy in entry.copies:
            segments.load_copy(directory, copy, dim, entry.rows)
    except CorruptStoreError as exc:
        return str(exc)
    if report is not None:
        deleted = set(entry.deleted)
        live = [i for i in range(entry.rows) if i not in deleted]
        report.records += len(live)
        ids.append(table.column("id").combine_chunks().take(pa.array(live, pa.int64())))
        report.unchecked += [f for f, crc in [(entry.file, entry.crc32),
                                              *((c.file, c.crc32) for c in entry.copies)]
                             if crc is None]
    return None


def _check_unique_ids(ids: list[pa.Array], report: CheckReport) -> None:
    # Only the segments' live ids: log frames may update records of segments.
    seen: set[str] = set()
    for array in ids:
        for value in array.to_pylist():
            if value in seen:
                report.problems.append(f"the id {value!r} is live in two segments")
                return
            seen.add(value)


def recover(path: str | os.PathLike[str]) -> RecoveryReport:
    """Keep what verifies, set the damaged files aside, and make the store open again."""
    directory = Path(path).expanduser()
    if not (directory / manifests.NAME).is_file():
        raise StoreError(f"{directory} is not a memory store (no {manifests.NAME})")
    lock = WriteLock(directory)
    try:
        return _recover(directory)
    finally:
        lock.release()


def _recover(directory: Path) -> RecoveryReport:
    from aios.memory.store import Retention

    report = RecoveryReport(directory)
    manifest = manifests.read(directory)  # a damaged manifest needs a backup: nothing to keep
    aside = directory / f"damaged-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"

    to_move: list[str] = []  # moved only once the new manifest no longer names them

    def move_aside(name: str) -> None:
        to_move.append(name)

    kept: list[manifests.SegmentEntry] = []
    for entry in manifest.segments:
        try:
            table, mapped = segments.load(directory, entry, manifest.dim)
            segments.verify(directory / entry.file, mapped, entry.crc32)
            segments.validate_full(directory / entry.file, table)
        except CorruptStoreError:
            report.dropped_segments.append(entry.file)
            report.records_lost += entry.rows - len(entry.deleted)
            for name in entry.files():
                move_aside(name)
            continue
        copies = []
        for copy in entry.copies:
            try:
                segments.load_copy(directory, copy, manifest.dim, entry.rows)
                copies.append(copy)
            except CorruptStoreError:
                report.dropped_copies.append(copy.file)  # rebuilt from the vectors on use
                move_aside(copy.file)
        kept.append(replace(entry, copies=tuple(copies)))
    report.kept_segments = len(kept)

    log = directory / manifest.wal
    frames: list[wal.Entry] = []
    if log.exists():
        try:
            scan = wal.scan(log, resync=True)
            frames = scan.entries
            if scan.damage is not None:
                report.log_damage = f"byte {scan.damage.offset}: {scan.damage.why}"
        except CorruptStoreError as exc:
            report.log_damage = str(exc)
    else:
        report.log_damage = "the log is missing"
    report.log_frames_kept = len(frames)

    retention = manifest.retention
    try:
        Retention.of(retention)
    except (ValueError, TypeError):
        retention, report.retention_cleared = {}, True

    if not report.changed:
        return report
    generation = manifest.generation + 1
    new_log = directory / manifests.wal_name(generation)
    with open(new_log, "wb") as f:
        f.write(wal.MAGIC)
        for frame in frames:
            f.write(wal.frame(frame.kind, wal.encode(frame.batch)))
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(directory)
    manifests.write(directory, replace(manifest, generation=generation, segments=tuple(kept),
                                       retention=retention))
    if report.log_damage is not None:
        move_aside(log.name)
    elif log.exists():
        log.unlink()
    for name in to_move:
        if (directory / name).exists():
            aside.mkdir(exist_ok=True)
            shutil.move(str(directory / name), aside / name)
            report.moved_to = aside
    fsync_dir(directory)
    return report
