"""Durable writes: the one way aios replaces a file.

Nothing aios stores is ever visible half-written: a new file is written under a temporary name
beside its target, fsynced, renamed over the target, and the directory is fsynced so the rename
itself survives a power cut. A crash leaves the old file or the new one, never part of one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: Temporary files are named `.NAME.tmp-PID`; `remove_temporaries` in aios.memory cleans them.
TEMPORARY_GLOB = ".*.tmp-*"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through `write(file)` so that it holds either the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
