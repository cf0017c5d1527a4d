"""The store on disk: reopening, the write lock, read-only snapshots, compaction and damage."""

import json
import os

import numpy as np
import pytest

from aios.memory import (
    CorruptStoreError,
    InvalidRecordError,
    StoreError,
    StoreLockedError,
    open_memory,
)
from aios.registry import default_registry
from memory.conftest import BACKENDS, unit_rows


def test_records_survive_closing_and_reopening(open_store):
    store = open_store(flush_rows=40)
    store.add(embeddings=unit_rows(100), ids=[str(i) for i in range(100)])
    store.delete("5")
    before = store.to_table()
    store.close()
    again = open_store()
    assert again.to_table().equals(before)
    assert again.dim == 8


def test_unflushed_records_are_replayed_from_the_log(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(3), ids=["a", "b", "c"])
    store.delete("b")
    store._release()  # like a crash: no flush, the log alone holds the changes
    again = open_store()
    assert again.to_table().column("id").to_pylist() == ["a", "c"]


@pytest.mark.parametrize("other", BACKENDS)
def test_a_store_written_by_one_backend_opens_with_the_other(open_store, other, tmp_path):
    if other not in default_registry().names("storage"):
        pytest.skip(f"{other} not installed")
    store = open_store(flush_rows=30)
    store.add(embeddings=unit_rows(50), ids=[str(i) for i in range(50)])
    store.add(embeddings=unit_rows(1, seed=4), ids=["log-only"])
    expected = store.to_table()
    store._release()
    with open_memory(store.path, backend=other) as reopened:
        assert reopened.backend == other
        assert reopened.to_table().equals(expected)
        assert reopened.search(unit_rows(50)[7], k=1).ids == ["7"]


def test_a_second_writer_is_refused_with_a_clear_error(open_store):
    store = open_store()
    with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}.*read_only=True"):
        open_memory(store.path, backend=store.backend)


def test_a_reader_sees_the_snapshot_of_when_it_opened(open_store):
    store = open_store(flush_rows=10)
    store.add(embeddings=unit_rows(15), ids=[f"a{i}" for i in range(15)])
    with open_memory(store.path, backend=store.backend, read_only=True) as reader:
        store.add(embeddings=unit_rows(20, seed=1), ids=[f"b{i}" for i in range(20)])
        store.compact()
        assert reader.count() == 15
        assert len(reader.search(unit_rows(1)[0], k=100)) == 15
        with pytest.raises(StoreError, match="read-only"):
            reader.add(embeddings=unit_rows(1))
    with open_memory(store.path, backend=store.backend, read_only=True) as later:
        assert later.count() == 35


def test_compact_merges_segments_and_drops_deleted_rows(open_store):
    store = open_store(flush_rows=10)
    store.add(embeddings=unit_rows(30), ids=[str(i) for i in range(30)])
    store.delete([str(i) for i in range(10)])
    assert store.stats()["segments"] == 1 and store.stats()["deleted_rows"] == 10
    assert store.compact() == {"before": 20, "after": 20, "dropped": 0}
    stats = store.stats()
    assert (stats["segments"], stats["deleted_rows"], stats["records"]) == (1, 0, 20)
    assert sorted(p.name for p in store.path.glob("seg-*")) == [
        f"seg-{stats['generation']:08d}-0000.arrow"]


def test_retention_forgets_old_low_quality_and_surplus_records(open_store):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    store = open_store()
    store.add(embeddings=unit_rows(5), ids=["old", "low", "n1", "n2", "n3"],
              quality=[0.9, 0.1, 0.9, None, 0.9],
              timestamps=[now - timedelta(days=10), now - timedelta(hours=4),
                          now - timedelta(hours=3), now - timedelta(hours=2),
                          now - timedelta(hours=1)])
    result = store.compact({"max_age_days": 5, "min_quality": 0.5, "max_records": 2})
    assert result == {"before": 5, "after": 2, "dropped": 3}
    assert sorted(store.to_table().column("id").to_pylist()) == ["n2", "n3"]


def test_the_retention_policy_is_kept_in_the_store(open_store):
    store = open_store(retention={"max_records": 1})
    store.add(embeddings=unit_rows(3))
    store.close()
    again = open_store()
    assert again.stats()["retention"] == {"max_records": 1}
    again.compact()
    assert again.count() == 1


def test_a_new_store_needs_a_dimension(open_store):
    with pytest.raises(InvalidRecordError, match="pass dim=N"):
        open_store(dim=None)


def test_a_wrong_dimension_for_an_existing_store_is_refused(open_store):
    open_store().close()
    with pytest.raises(InvalidRecordError, match="holds 8-dimensional vectors, not 9"):
        open_store(dim=9)


def test_a_path_that_is_a_file_is_refused(open_store, tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(StoreError, match="is a file, not a store directory"):
        open_store(path)


def test_a_directory_of_other_files_is_not_taken_over(open_store, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not a memory store.*notes.txt"):
        open_store(tmp_path / "docs")


def test_a_truncated_segment_is_reported_by_name(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(20))
    store.close()
    segment = next(store.path.glob("seg-*.arrow"))
    segment.write_bytes(segment.read_bytes()[:-100])
    with pytest.raises(CorruptStoreError, match=f"segment .*{segment.name} is damaged"):
        open_store()


def test_a_manifest_edited_by_hand_fails_its_checksum(open_store):
    store = open_store()
    store.close()
    manifest = store.path / "MANIFEST.json"
    document = json.loads(manifest.read_text())
    document["body"]["dim"] = 9
    manifest.write_text(json.dumps(document))
    with pytest.raises(CorruptStoreError, match="checksum"):
        open_store()


def test_a_torn_final_log_frame_is_dropped_and_the_store_opens(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(1), ids=["kept"])
    store.add(embeddings=unit_rows(1, seed=1), ids=["torn"])
    store._release()
    log = next(store.path.glob("wal-*.log"))
    log.write_bytes(log.read_bytes()[:-10])
    again = open_store()
    assert again.to_table().column("id").to_pylist() == ["kept"]
    again.add(embeddings=unit_rows(1, seed=2), ids=["after"])  # appends after the good part
    again._release()
    assert open_store().to_table().column("id").to_pylist() == ["kept", "after"]


def test_a_damaged_frame_in_the_middle_of_the_log_is_reported(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(1), ids=["a"])
    store.add(embeddings=unit_rows(1), ids=["b"])
    store._release()
    log = next(store.path.glob("wal-*.log"))
    data = bytearray(log.read_bytes())
    data[40] ^= 0xFF
    log.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError, match="damaged at byte 8"):
        open_store()


def test_a_closed_store_refuses_use(open_store):
    store = open_store()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.search(np.ones(8))


def test_segment_vectors_are_mapped_in_place_and_64_byte_aligned(open_store):
    store = open_store(dim=384 // 8)
    store.add(embeddings=np.ones((50, 48)), contents="some text of odd length")
    store.close()
    again = open_store(dim=48)
    matrix = again._segments[0].matrix()
    assert matrix.ctypes.data % 64 == 0
    assert not matrix.flags.owndata and not matrix.flags.writeable  # a view of the mapped file


def test_persisted_copies_are_written_with_each_segment_and_mapped_when_reopened(open_store):
    store = open_store(dim=16, flush_rows=50, copies="i8,f16")
    x = np.random.default_rng(3).normal(size=(120, 16)).astype(np.float32)
    for start in (0, 50, 100):  # 50 + 50 flushed while adding, 20 on close
        part = x[start:start + 50]
        store.add(embeddings=part, ids=[str(start + i) for i in range(len(part))])
    store.close()
    assert len(list(store.path.glob("seg-*.i8.arrow"))) == 3
    assert len(list(store.path.glob("seg-*.f16.arrow"))) == 3
    again = open_store(dim=16)
    assert again.stats()["copies"] == ["i8", "f16"]
    codes, scale = again._segments[0].quantized("i8", again._kernel)
    assert codes.dtype == np.int8 and not codes.flags.owndata and codes.ctypes.data % 64 == 0
    assert scale.shape == (50,)
    for precision in ("i8", "f16"):
        assert again.search(x[:5], k=5, precision=precision)[3].ids == \
            again.search(x[:5], k=5)[3].ids


def test_compact_replaces_the_copies_with_those_of_the_new_segment(open_store):
    store = open_store(flush_rows=10, copies=["i8"])
    store.add(embeddings=unit_rows(30))
    store.compact()
    names = sorted(p.name for p in store.path.glob("seg-*"))
    generation = store.stats()["generation"]
    assert names == [f"seg-{generation:08d}-0000.arrow", f"seg-{generation:08d}-0000.i8.arrow"]


def test_an_unknown_copy_precision_is_refused(open_store):
    with pytest.raises(InvalidRecordError, match="copies \\['i4'\\] are unknown"):
        open_store(copies="i4")
