"""Fuzzing the loader: damaged files give a StoreError (or open), never a crash or other error.

The loader (manifest, segments, log) is shared by every backend, so it is fuzzed once.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios.memory import MemoryStore, StoreError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "store"
    with MemoryStore(path, 4, flush_rows=10, copies="i8") as store:
        store.add(embeddings=np.arange(48, dtype=np.float32).reshape(12, 4), contents="text",
                  category="c")
        store.delete(store.to_table().column("id").to_pylist()[0])
        store.add(embeddings=np.ones((2, 4)), ids=["x", "y"])  # stays in the log
        store._release()
    return path


FILES = ["MANIFEST.json", "seg-*[0-9].arrow", "seg-*.i8.arrow", "wal-*.log"]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(FILES), action=st.sampled_from(["truncate", "flip", "splice"]),
       position=st.floats(0, 1), data=st.binary(min_size=1, max_size=16))
def test_a_damaged_file_opens_or_raises_a_store_error(pristine, tmp_path, which, action,
                                                      position, data):
    store_path = tmp_path / "copy"
    shutil.rmtree(store_path, ignore_errors=True)
    shutil.copytree(pristine, store_path)
    target = next(store_path.glob(which))
    content = bytearray(target.read_bytes())
    at = int(position * (len(content) - 1))
    if action == "truncate":
        content = content[:at]
    elif action == "flip":
        content[at] ^= data[0] or 1
    else:
        content[at:at + len(data)] = data
    target.write_bytes(bytes(content))
    try:
        store = MemoryStore(store_path, read_only=True)
    except StoreError:
        return
    with store:  # damage found on first use of a segment is a StoreError too
        for use in (store.count, store.to_table,
                    lambda: store.search(np.ones(4), k=3, metric="dot"),
                    lambda: store.search(np.ones(4), k=3, metric="dot", precision="i8")):
            try:
                use()
            except StoreError:
                pass
