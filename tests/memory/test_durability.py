"""Killing a writer at any moment loses no acknowledged change and leaves a store that opens."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from aios.memory import open_memory

#: A writer that acknowledges each change on stdout only after the store's call returned.
CHILD = r"""
import sys
import numpy as np
backend, path, prefix = sys.argv[1:4]
if backend == "native":
    from aios_native.storage import native_store as build
else:
    from aios.memory import reference_store as build
store = build(path, dim=8, flush_rows=25)
rng = np.random.default_rng(abs(hash(prefix)) % 2**32)
n = 0
while True:
    ids = [f"{prefix}-{n + i}" for i in range(3)]
    store.add(embeddings=rng.normal(size=(3, 8)), ids=ids)
    print("+" + " ".join(ids), flush=True)
    if n % 12 == 0:
        print("?" + ids[0], flush=True)  # a deletion in flight may or may not take effect
        store.delete(ids[0])
        print("-" + ids[0], flush=True)
    if n % 60 == 0 and n:
        store.compact()
    n += 3
"""


def test_sigkill_in_a_loop_loses_no_acknowledged_record(backend, tmp_path):
    path = tmp_path / "store"
    added: set[str] = set()
    deleted: set[str] = set()
    maybe_deleted: set[str] = set()
    rng = np.random.default_rng(0)
    for round_ in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, backend, str(path), f"r{round_}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = child.stdout.readline()  # wait until it writes, then let it run a little
        assert first.startswith("+"), child.stderr.read()
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(child.pid, signal.SIGKILL)
        out = child.stdout.read()  # the same buffered reader `first` came from
        child.wait()
        child.stdout.close()
        child.stderr.close()
        for line in [first, *out.splitlines()]:
            if line.startswith("+"):
                added.update(line[1:].split())
            elif line.startswith("-"):
                deleted.add(line[1:].strip())
            elif line.startswith("?"):
                maybe_deleted.add(line[1:].strip())
        with open_memory(path, backend=backend, read_only=True) as store:
            ids = set(store.to_table().column("id").to_pylist())
        assert added - maybe_deleted <= ids, f"round {round_}: acknowledged records lost"
        assert not deleted & ids, f"round {round_}: acknowledged deletions undone"
    assert len(added) > 30
    with open_memory(path, backend=backend) as store:  # and a writer opens it too
        assert store.count() >= len(added - maybe_deleted)


@pytest.mark.parametrize("when", ["segment", "manifest"])
def test_a_crash_between_the_steps_of_a_flush_keeps_every_record(backend, tmp_path,
                                                                 monkeypatch, when):
    from aios.memory import manifest, segments

    store = open_memory(tmp_path / "s", 8, backend=backend)
    store.add(embeddings=np.ones((3, 8)), ids=["a", "b", "c"])

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(segments if when == "segment" else manifest, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        store.flush()
    store._release()
    monkeypatch.undo()
    with open_memory(tmp_path / "s", backend=backend) as again:
        assert sorted(again.to_table().column("id").to_pylist()) == ["a", "b", "c"]
        assert not list((tmp_path / "s").glob(".*tmp*"))
