"""The store's file primitives: the single-writer lock and the clean-up of temporaries.

Atomic replacement itself is the core's `aios.io.files.write_atomic` (re-exported here).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from aios.io import TEMPORARY_GLOB, fsync_dir, write_atomic
from aios.memory.errors import StoreLockedError

__all__ = ["LOCK_NAME", "WriteLock", "fsync_dir", "remove_temporaries", "write_atomic"]

LOCK_NAME = "LOCK"


def remove_temporaries(directory: Path) -> None:
    """Delete temporary files a killed writer left behind (they were never renamed)."""
    for leftover in directory.glob(TEMPORARY_GLOB):
        with contextlib.suppress(OSError):
            leftover.unlink()


class WriteLock:
    """An exclusive `flock` on the store's LOCK file, held while a writer has the store open.

    The kernel releases it when the process dies, so a crashed writer never leaves a stale lock.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(self._fd)
            os.close(self._fd)
            self._fd = None
            if holder == f" (pid {os.getpid()})":
                raise StoreLockedError(
                    f"the memory store {directory} is already open for writing in this process"
                    f"{holder}; share that store object (it is thread-safe), close it first, or "
                    "open this one read-only (open_memory(path, read_only=True))") from None
            raise StoreLockedError(
                f"the memory store {directory} is open for writing by another process"
                f"{holder}; close it there, or open this one read-only "
                "(open_memory(path, read_only=True))") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0) or b"x")
        return f" (pid {pid})"
    return ""

