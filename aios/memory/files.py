"""Durable file primitives: atomic replace, fsync of a directory, the single-writer lock.

Nothing the store writes is ever visible half-written: a new file is written under a temporary
name, fsynced, renamed over its final name, and the directory is fsynced so the rename itself
survives a power cut.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from aios.memory.errors import StoreLockedError

LOCK_NAME = "LOCK"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(file)` so that it holds either the old or the new content."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(path.parent)


def remove_temporaries(directory: Path) -> None:
    """Delete temporary files a killed writer left behind (they were never renamed)."""
    for leftover in directory.glob(".*.tmp-*"):
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

