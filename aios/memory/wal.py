"""The write-ahead log: every change is appended and fsynced here before it is acknowledged.

A log file starts with an 8-byte magic that names its frame format. Version 2 (written by
this aios)::

    "AFRM" | kind (u8) | 3 zero bytes | payload length (u64 LE) | header crc32 (u32 LE)
           | payload crc32 (u32 LE) | payload

`kind` is ADD (payload: an Arrow IPC stream of one record batch), DELETE (a stream of one
batch with an `id` column) or UPDATE (a record batch whose ids replace the live records with
those ids). The header crc32 covers the first 16 bytes, the payload crc32 the payload.

Why two checksums: a frame is acknowledged only after it is fsynced, so the one frame that may
be incomplete is the last, and a torn write leaves a *prefix* of its bytes. With the header
checked on its own, "the file ends inside a frame whose header verifies" (or inside the header
itself, whose bytes so far match) proves a torn tail, which is dropped: it was never
acknowledged. Anything else that fails a check, the last frame included, is damage to
acknowledged data and raises `CorruptStoreError`; `aios memory recover` keeps what verifies.

Version 1 logs (``AIOSWAL1``, one crc32 over kind, length and payload) are still read, with the
rule they allow: a final frame that fails is taken for a torn tail.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from aios.memory.errors import CorruptStoreError

MAGIC = b"AIOSWAL2"
MAGIC_V1 = b"AIOSWAL1"
FRAME = struct.Struct("<4sB3xQII")
FRAME_V1 = struct.Struct("<4sB3xQI")
FRAME_MAGIC = b"AFRM"
_HEADER = struct.Struct("<4sB3xQ")  # the part the header crc32 covers
ADD, DELETE, UPDATE = 1, 2, 3
KINDS = (ADD, DELETE, UPDATE)


@dataclass(frozen=True)
class Entry:
    kind: int
    batch: pa.RecordBatch


def encode(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def frame(kind: int, payload: bytes, version: int = 2) -> bytes:
    """One frame of a log of `version` (1 only to append to a log an older aios started)."""
    if version == 1:
        crc = zlib.crc32(payload, zlib.crc32(struct.pack("<BQ", kind, len(payload))))
        return FRAME_V1.pack(FRAME_MAGIC, kind, len(payload), crc) + payload
    header = _HEADER.pack(FRAME_MAGIC, kind, len(payload))
    return FRAME.pack(FRAME_MAGIC, kind, len(payload), zlib.crc32(header),
                      zlib.crc32(payload)) + payload


@dataclass(frozen=True)
class Damage:
    """A frame that fails its checks: where it starts and why."""

    offset: int
    why: str


@dataclass(frozen=True)
class Scan:
    """What a pass over a log found: the frames that verify (with their byte spans), where the
    intact prefix ends, whether a torn tail follows it, and the first damage, if any."""

    entries: list[Entry]
    spans: list[tuple[int, int]]
    valid_length: int
    damage: Damage | None
    version: int


def create(path: Path) -> None:
    """A new, empty log (written and fsynced before any manifest names it)."""
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.flush()
        os.fsync(f.fileno())


def read(path: Path) -> tuple[list[Entry], int]:
    """Every entry of the log and the byte length they end at (a torn tail excluded).

    Damage that is not provably a torn tail raises `CorruptStoreError`.
    """
    result = scan(path)
    if result.damage is not None:
        raise _damaged(path, result.damage.offset, result.damage.why)
    return result.entries, result.valid_length


def scan(path: Path, *, resync: bool = False) -> Scan:
    """Read the log's frames up to the first damage (or, with `resync`, every frame that
    verifies, skipping damaged stretches: what `aios memory recover` keeps)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptStoreError(f"the write-ahead log {path} named by the manifest is missing; "
                                "restore it from a backup, or run `aios memory recover "
                                f"{path.parent}` to open the store without its unflushed "
                                "changes") from None
    except OSError as exc:
        raise CorruptStoreError(f"cannot read the write-ahead log {path}: {exc}") from exc
    if len(data) < len(MAGIC):
        # The log is created with its magic before the manifest names it: shorter is damage.
        raise CorruptStoreError(f"the write-ahead log {path} is truncated ({len(data)} bytes); "
                                f"run `aios memory recover {path.parent}` to start a new log")
    magic = data[:len(MAGIC)]
    if magic not in (MAGIC, MAGIC_V1):
        raise CorruptStoreError(f"{path} is not an aios write-ahead log (bad magic); run "
                                f"`aios memory recover {path.parent}` to start a new log")
    version = 2 if magic == MAGIC else 1
    step = _next_v2 if version == 2 else _next_v1
    entries: list[Entry] = []
    spans: list[tuple[int, int]] = []
    offset, valid_length, damage = len(MAGIC), len(MAGIC), None
    while offset < len(data):
        kind, end, why = step(data, offset)
        if why is None and kind is None:
            break  # a torn tail: never acknowledged
        if why is None:
            header = FRAME.size if version == 2 else FRAME_V1.size
            batch, why = _decode(data[offset + header:end])
            if why is None:
                entries.append(Entry(kind, batch))
                spans.append((offset, end))
                if damage is None:
                    valid_length = end
                offset = end
                continue
        if damage is None:
            damage = Damage(offset, why)
        if not resync or version == 1:
            break
        offset = _resync(data, offset + 1)
    return Scan(entries, spans, valid_length, damage, version)


def _next_v2(data: bytes, offset: int) -> tuple[int | None, int, str | None]:
    """(kind, end, None) for a frame that verifies, (None, 0, None) for a torn tail, or
    (None, 0, why) for damage."""
    rest = data[offset:offset + FRAME.size]
    if len(rest) < FRAME.size:
        # The header itself is cut short: torn if what is there is a header's beginning.
        prefix_ok = rest[:4] == FRAME_MAGIC[:len(rest[:4])]
        kind_ok = len(rest) < 5 or rest[4] in KINDS
        zeros_ok = rest[5:8] == b"\0" * len(rest[5:8])
        if prefix_ok and kind_ok and zeros_ok:
            return None, 0, None
        return None, 0, "a frame header at the end of the log is not the start of a frame"
    magic, kind, length, header_crc, payload_crc = FRAME.unpack_from(data, offset)
    if zlib.crc32(data[offset:offset + _HEADER.size]) != header_crc or magic != FRAME_MAGIC \
            or kind not in KINDS:
        return None, 0, "a frame header fails its checksum"
    end = offset + FRAME.size + length
    if end > len(data):
        return None, 0, None  # the header verifies and the payload stops short: torn
    if zlib.crc32(data[offset + FRAME.size:end]) != payload_crc:
        return None, 0, "a frame's payload fails its checksum"
    return kind, end, None


def _next_v1(data: bytes, offset: int) -> tuple[int | None, int, str | None]:
    end_of_header = offset + FRAME_V1.size
    if end_of_header > len(data):
        return None, 0, None
    magic, kind, length, crc = FRAME_V1.unpack_from(data, offset)
    end = end_of_header + length
    if end > len(data):
        if magic == FRAME_MAGIC and kind in KINDS:
            return None, 0, None
        return None, 0, "a frame header is invalid"
    payload = data[end_of_header:end]
    if not (magic == FRAME_MAGIC and kind in KINDS and
            zlib.crc32(payload, zlib.crc32(struct.pack("<BQ", kind, length))) == crc):
        if end == len(data):
            return None, 0, None  # version 1 cannot tell a torn final frame from damage
        return None, 0, "a frame fails its checksum"
    return kind, end, None


def _resync(data: bytes, start: int) -> int:
    """The next offset after `start` where a version-2 frame header verifies (or the end)."""
    at = data.find(FRAME_MAGIC, start)
    while at != -1:
        if at + FRAME.size <= len(data):
            header_crc = FRAME.unpack_from(data, at)[3]
            if zlib.crc32(data[at:at + _HEADER.size]) == header_crc:
                return at
        at = data.find(FRAME_MAGIC, at + 1)
    return len(data)


def _decode(payload: bytes) -> tuple[pa.RecordBatch | None, str | None]:
    try:
        reader = pa.ipc.open_stream(payload)
        batches = list(reader)
        for batch in batches:
            batch.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return None, f"its Arrow payload is unreadable ({str(exc).splitlines()[0]})"
    if len(batches) != 1:
        return None, f"it holds {len(batches)} batches instead of one"
    return batches[0], None


def _damaged(path: Path, offset: int, why: str) -> CorruptStoreError:
    return CorruptStoreError(
        f"the write-ahead log {path} is damaged at byte {offset}: {why}; run `aios memory "
        f"recover {path.parent}` to keep every change that verifies (the damaged log is kept "
        "aside), or restore the store from a backup")


class Writer:
    """Appends frames to one log file; `append` returns only once the frame is on disk."""

    def __init__(self, path: Path, valid_length: int) -> None:
        self.path = path
        self._file = open(path, "r+b")
        self.version = 1 if self._file.read(len(MAGIC)) == MAGIC_V1 else 2
        if os.fstat(self._file.fileno()).st_size != valid_length:
            self._file.truncate(valid_length)  # drop a torn tail before appending after it
            os.fsync(self._file.fileno())
        self._file.seek(valid_length)
        self.size = valid_length

    def append(self, kind: int, batch: pa.RecordBatch) -> None:
        data = frame(kind, encode(batch), self.version)
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.size += len(data)

    def close(self) -> None:
        self._file.close()

