"""Every flipped byte of every store file is found, in a child process (a crash would be
counted, not suffered): issue 23, item 11 ("segment contents carry no checksum")."""

import shutil

import numpy as np
import pytest
from fuzzing import fuzz, variants_flipping

from aios.memory import MemoryStore


def read_everything(path):
    """The loader the child runs: open the store holding `path`, read and search all of it."""
    from pathlib import Path

    with MemoryStore(Path(path).parent, read_only=True) as store:
        store.to_table().to_pylist()
        for precision in ("f32", "i8"):
            store.search(np.ones(4, np.float32), k=5, metric="dot", precision=precision)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "store"
    with MemoryStore(path, 4, flush_rows=10, copies="i8") as store:
        store.add(embeddings=np.arange(48, dtype=np.float32).reshape(12, 4),
                  contents=[f"text {i}" for i in range(12)], category="c", quality=0.5)
        store.delete(store.to_table().column("id").to_pylist()[0])
        store.add(embeddings=np.ones((2, 4)), ids=["x", "y"])  # stays in the log
        store._release()
    return path


@pytest.mark.parametrize("pattern", ["seg-*-0000.arrow", "seg-*.i8.arrow", "wal-*.log"])
def test_every_flipped_byte_of_a_store_file_is_a_store_error(pristine, tmp_path, pattern):
    copy = tmp_path / "store"
    shutil.copytree(pristine, copy)
    original = next(pristine.glob(pattern))
    size = original.stat().st_size
    report = fuzz(original, "tests.memory.test_store_fuzz:read_everything",
                  variants_flipping(range(size), (0x01,)), error="aios.memory.StoreError",
                  target=copy / original.name, named=original.name)
    assert report.crashes == 0, report.failures[:5]
    assert report.failures == []
    assert report.outcomes == {"error": size}  # not one flip goes unnoticed


def test_a_flipped_manifest_byte_is_an_error_or_only_moved_white_space(pristine, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(pristine, copy)
    original = pristine / "MANIFEST.json"
    raw = original.read_bytes()
    report = fuzz(original, "tests.memory.test_store_fuzz:read_everything",
                  variants_flipping(range(len(raw)), (0x01,)), error="aios.memory.StoreError",
                  target=copy / original.name, named="MANIFEST.json")
    assert report.crashes == 0 and report.failures == []
    harmless = sum(raw[at:at + 1] in (b" ", b"\n") for at in range(len(raw)))
    assert report.outcomes["loaded"] <= harmless
