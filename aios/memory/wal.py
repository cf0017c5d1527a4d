"""The write-ahead log: every change is appended and fsynced here before it is acknowledged.

A log file starts with an 8-byte magic and holds frames::

    "AFRM" | kind (u8) | 3 zero bytes | payload length (u64 LE) | crc32 (u32 LE) | payload

`kind` is ADD (payload: an Arrow IPC stream of one record batch), DELETE (a stream of one
batch with an `id` column) or UPDATE (a record batch whose ids replace the live records with
those ids). The crc32 covers kind, length and payload. Replaying stops at a torn final frame (a
write the process did not finish: it was never acknowledged); a bad frame followed by more data
is corruption and is reported, never silently skipped.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from aios.memory.errors import CorruptStoreError

MAGIC = b"AIOSWAL1"
FRAME = struct.Struct("<4sB3xQI")
FRAME_MAGIC = b"AFRM"
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


def frame(kind: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<BQ", kind, len(payload))))
    return FRAME.pack(FRAME_MAGIC, kind, len(payload), crc) + payload


def create(path: Path) -> None:
    """A new, empty log (written and fsynced before any manifest names it)."""
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.flush()
        os.fsync(f.fileno())


def read(path: Path) -> tuple[list[Entry], int]:
    """Every complete entry of the log and the byte length they end at (a torn tail excluded)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CorruptStoreError(f"cannot read the write-ahead log {path}: {exc}") from exc
    if len(data) < len(MAGIC):
        # The log is created with its magic before the manifest names it: shorter is damage.
        raise CorruptStoreError(f"the write-ahead log {path} is truncated ({len(data)} bytes); "
                                "restore it from a backup or remove the store")
    if data[:len(MAGIC)] != MAGIC:
        raise CorruptStoreError(f"{path} is not an aios write-ahead log (bad magic)")
    entries: list[Entry] = []
    offset = len(MAGIC)
    while offset < len(data):
        end_of_header = offset + FRAME.size
        if end_of_header > len(data):
            break  # torn header at the tail
        magic, kind, length, crc = FRAME.unpack_from(data, offset)
        end = end_of_header + length
        if end > len(data):
            if magic == FRAME_MAGIC and kind in KINDS:
                break  # torn payload at the tail
            raise _damaged(path, offset, "a frame header is invalid")
        payload = data[end_of_header:end]
        valid = (magic == FRAME_MAGIC and kind in KINDS and
                 zlib.crc32(payload, zlib.crc32(struct.pack("<BQ", kind, length))) == crc)
        if not valid:
            if end == len(data):
                break  # a final frame whose bytes did not all reach the disk
            raise _damaged(path, offset, "a frame fails its checksum")
        entries.append(Entry(kind, _decode(path, offset, payload)))
        offset = end
    return entries, offset


def _decode(path: Path, offset: int, payload: bytes) -> pa.RecordBatch:
    try:
        reader = pa.ipc.open_stream(payload)
        batches = list(reader)
        for batch in batches:
            batch.validate(full=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _damaged(path, offset, f"its Arrow payload is unreadable ({exc})") from None
    if len(batches) != 1:
        raise _damaged(path, offset, f"it holds {len(batches)} batches instead of one")
    return batches[0]


def _damaged(path: Path, offset: int, why: str) -> CorruptStoreError:
    return CorruptStoreError(
        f"the write-ahead log {path} is damaged at byte {offset}: {why}; the records before that "
        "point are intact — copy the store aside and truncate the log to that size to recover them")


class Writer:
    """Appends frames to one log file; `append` returns only once the frame is on disk."""

    def __init__(self, path: Path, valid_length: int) -> None:
        self.path = path
        self._file = open(path, "r+b")
        if os.fstat(self._file.fileno()).st_size != valid_length:
            self._file.truncate(valid_length)  # drop a torn tail before appending after it
            os.fsync(self._file.fileno())
        self._file.seek(valid_length)
        self.size = valid_length

    def append(self, kind: int, batch: pa.RecordBatch) -> None:
        data = frame(kind, encode(batch))
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.size += len(data)

    def close(self) -> None:
        self._file.close()

