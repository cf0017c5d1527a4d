"""The manifest: which segment files and which write-ahead log make up the store right now.

It is one small JSON document replaced atomically (temp file, fsync, rename), so a reader sees
either the state before a flush or after it. A crc32 of its body detects damage; every value
read from it is checked before use.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios.memory.errors import CorruptStoreError
from aios.memory.files import write_atomic

NAME = "MANIFEST.json"
FORMAT = "aios-memory"
VERSION = 1
_MAX_BYTES = 256 << 20
#: Lower precisions a segment's vectors may be copied to (see `aios.memory.search`).
PRECISIONS = ("f16", "i8")


@dataclass(frozen=True)
class CopyEntry:
    """A lower-precision copy of a segment's vectors ("f16" or "i8"), in its own Arrow file."""

    precision: str
    file: str
    bytes: int
    crc32: int | None = None  # of the whole file; None in stores written before checksums


@dataclass(frozen=True)
class SegmentEntry:
    """One immutable Arrow IPC file: its name, row count, byte size, deleted row numbers and the
    files of its persisted lower-precision copies."""

    file: str
    rows: int
    bytes: int
    deleted: tuple[int, ...] = ()
    copies: tuple[CopyEntry, ...] = ()
    crc32: int | None = None  # of the whole file; None in stores written before checksums

    def files(self) -> list[str]:
        return [self.file, *(c.file for c in self.copies)]


@dataclass(frozen=True)
class Manifest:
    dim: int
    generation: int
    segments: tuple[SegmentEntry, ...] = ()
    retention: dict[str, Any] = field(default_factory=dict)
    copies: tuple[str, ...] = ()  # precisions persisted beside every new segment

    @property
    def wal(self) -> str:
        return wal_name(self.generation)

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "dim": self.dim, "generation": self.generation,
            "wal": self.wal, "retention": self.retention, "copies": list(self.copies),
            "segments": [{"file": s.file, "rows": s.rows, "bytes": s.bytes,
                          "deleted": list(s.deleted),
                          "copies": [_with_crc({"precision": c.precision, "file": c.file,
                                                "bytes": c.bytes}, c.crc32) for c in s.copies],
                          **_with_crc({}, s.crc32)}
                         for s in self.segments],
        }


def _with_crc(entry: dict[str, Any], crc: int | None) -> dict[str, Any]:
    return entry if crc is None else {**entry, "crc32": crc}


def wal_name(generation: int) -> str:
    return f"wal-{generation:08d}.log"


def segment_name(generation: int, index: int = 0) -> str:
    return f"seg-{generation:08d}-{index:04d}.arrow"


def write(directory: Path, manifest: Manifest) -> None:
    body = json.dumps(manifest.body(), sort_keys=True, separators=(",", ":"))
    text = json.dumps({"crc32": zlib.crc32(body.encode()), "body": json.loads(body)},
                      sort_keys=True, indent=1)
    write_atomic(directory / NAME, lambda f: f.write(text.encode()))


def read(directory: Path) -> Manifest:
    path = directory / NAME
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise _bad(path, f"it is {size} bytes, more than a manifest can be")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CorruptStoreError(f"cannot read {path}: {exc}") from exc
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad(path, "it is not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("body"), dict):
        raise _bad(path, "it has no body")
    body = document["body"]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    if document.get("crc32") != zlib.crc32(canonical):
        raise _bad(path, "its checksum does not match its content")
    if body.get("format") != FORMAT:
        raise _bad(path, f"its format is {body.get('format')!r}, not {FORMAT!r}")
    if body.get("version") != VERSION:
        raise CorruptStoreError(
            f"{path} has format version {body.get('version')!r}; this aios reads version "
            f"{VERSION}: upgrade aios to open it")
    dim, generation = body.get("dim"), body.get("generation")
    if not _is_int(dim, 1, 65536) or not _is_int(generation, 0, 10**12):
        raise _bad(path, "its dim or generation is out of range")
    if body.get("wal") != wal_name(generation) or not isinstance(body.get("retention"), dict):
        raise _bad(path, "its wal or retention entry is invalid")
    segments = body.get("segments")
    if not isinstance(segments, list):
        raise _bad(path, "its segment list is missing")
    copies = body.get("copies", [])
    if not isinstance(copies, list) or not all(c in PRECISIONS for c in copies):
        raise _bad(path, "its copies setting is invalid")
    return Manifest(dim, generation, tuple(_segment(path, s) for s in segments),
                    dict(body["retention"]), tuple(copies))


def _segment(path: Path, entry: Any) -> SegmentEntry:
    if not isinstance(entry, dict):
        raise _bad(path, "a segment entry is not an object")
    name, rows, size, deleted = (entry.get(k) for k in ("file", "rows", "bytes", "deleted"))
    if (not _is_file_name(name) or not _is_int(rows, 0, 2**40) or not _is_int(size, 0, 2**50)
            or not isinstance(deleted, list)
            or not all(_is_int(r, 0, rows - 1) for r in deleted)):
        raise _bad(path, f"segment entry {entry!r:.200} is invalid")
    copies = entry.get("copies", [])
    if not isinstance(copies, list):
        raise _bad(path, f"segment entry {entry!r:.200} has invalid copies")
    return SegmentEntry(name, rows, size, tuple(sorted(set(deleted))),
                        tuple(_copy(path, c) for c in copies), _crc(path, entry))


def _copy(path: Path, entry: Any) -> CopyEntry:
    if not isinstance(entry, dict):
        raise _bad(path, "a copy entry is not an object")
    precision, name, size = (entry.get(k) for k in ("precision", "file", "bytes"))
    if (precision not in PRECISIONS or not _is_file_name(name)
            or not _is_int(size, 0, 2**50)):
        raise _bad(path, f"copy entry {entry!r:.200} is invalid")
    return CopyEntry(precision, name, size, _crc(path, entry))


def _crc(path: Path, entry: dict[str, Any]) -> int | None:
    crc = entry.get("crc32")
    if crc is not None and not _is_int(crc, 0, 2**32 - 1):
        raise _bad(path, f"entry {entry!r:.200} has an invalid crc32")
    return crc


def _is_file_name(name: Any) -> bool:
    return (isinstance(name, str) and name.startswith("seg-") and name.endswith(".arrow")
            and "/" not in name)


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _bad(path: Path, why: str) -> CorruptStoreError:
    return CorruptStoreError(f"the manifest {path} is damaged: {why}; restore it from a backup "
                             "(the segment files next to it hold the data)")
