"""Adding, reading, updating and deleting records, and the errors bad input gets."""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from aios.memory import InvalidRecordError, RecordNotFoundError, record_schema
from memory.conftest import unit_rows


def test_add_returns_the_given_ids_and_get_returns_the_records_in_the_order_asked(open_store):
    store = open_store()
    x = unit_rows(3)
    assert store.add(embeddings=x, ids=["a", "b", "c"], contents=["A", "B", "C"]) == ["a", "b", "c"]
    got = store.get(["c", "a"])
    assert got.column("content").to_pylist() == ["C", "A"]
    np.testing.assert_array_equal(np.stack(got.column("embedding").to_pylist()), x[[2, 0]])


def test_ids_are_generated_unique_when_not_given(open_store):
    ids = open_store().add(embeddings=unit_rows(50))
    assert len(set(ids)) == 50 and all(isinstance(i, str) and i for i in ids)


def test_records_from_dicts_keep_every_field(open_store):
    store = open_store()
    when = datetime(2024, 5, 1, tzinfo=timezone.utc)
    store.add([{"id": "x", "embedding": unit_rows(1)[0], "content": "hello", "modality": "image",
                "category": "pets", "source": "cam", "quality": 0.5, "extra": {"w": 3},
                "timestamp": when}])
    row = store.get("x").to_pylist()[0]
    assert row["modality"] == "image" and row["timestamp"] == when
    assert row["metadata"] == {"category": "pets", "source": "cam", "quality": 0.5,
                               "extra": '{"w": 3}'}


def test_records_from_a_pyarrow_table_round_trip(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(4), ids=list("abcd"), category="k")
    table = store.to_table()
    other = open_store(store.path.parent / "copy")
    other.add(table)
    assert other.to_table().equals(table)


def test_the_table_schema_is_the_documented_one(open_store):
    store = open_store(dim=5)
    store.add(embeddings=np.ones((1, 5)))
    assert store.to_table().schema.equals(record_schema(5))
    assert record_schema(5).names == ["id", "timestamp", "modality", "content", "embedding",
                                      "metadata"]


def test_count_and_iteration_see_every_live_record(open_store):
    store = open_store(flush_rows=10)
    store.add(embeddings=unit_rows(25))  # flushed into a segment
    store.add(embeddings=unit_rows(5, seed=1))  # still in the log
    store.delete(store.to_table().column("id").to_pylist()[:3])
    assert store.count() == len(store) == 27
    assert sum(b.num_rows for b in store) == 27
    assert all(isinstance(b, pa.RecordBatch) for b in store.batches())


def test_delete_removes_records_and_counts_only_live_ones(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(3), ids=["a", "b", "c"])
    assert store.delete(["a", "zzz"]) == 1
    assert store.delete("a") == 0
    with pytest.raises(RecordNotFoundError, match="'a'"):
        store.get("a")
    assert store.count() == 2


def test_update_replaces_a_record_keeping_its_id(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(2), ids=["a", "b"], contents=["old", "b"])
    store.flush()
    store.update(embeddings=unit_rows(1, seed=9), ids=["a"], contents=["new"])
    assert store.get("a").column("content").to_pylist() == ["new"]
    assert store.count() == 2


def test_update_of_an_unknown_id_is_refused(open_store):
    store = open_store()
    with pytest.raises(RecordNotFoundError, match="use add"):
        store.update(embeddings=unit_rows(1), ids=["nope"])


def test_a_deleted_id_may_be_added_again(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(1), ids=["a"], contents=["1"])
    store.flush()
    store.delete("a")
    store.add(embeddings=unit_rows(1), ids=["a"], contents=["2"])
    assert store.get("a").column("content").to_pylist() == ["2"]


def test_export_writes_every_live_record_to_parquet(open_store, tmp_path):
    import pyarrow.parquet as pq

    store = open_store()
    store.add(embeddings=unit_rows(6), ids=list("abcdef"))
    store.delete("c")
    assert store.export(tmp_path / "out.parquet") == 5
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == list("abdef")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"embeddings": np.ones((2, 7))}, r"shape \(2x7\).*8-dimensional"),
    ({"embeddings": [[np.nan] * 8]}, "NaN or infinity"),
    ({"embeddings": [[np.inf] * 8]}, "NaN or infinity"),
    ({"embeddings": np.ones((2, 8)), "ids": ["a", "a"]}, "'a' appears twice"),
    ({"embeddings": np.ones((1, 8)), "modality": "smell"}, "modality.*'smell'"),
    ({"embeddings": np.ones((1, 8)), "quality": float("nan")}, "quality"),
    ({"embeddings": np.ones((1, 8)), "extra": "{oops"}, "not valid JSON"),
    ({"embeddings": np.ones((2, 8)), "ids": ["a"]}, "ids has 1 entries for 2"),
    ({}, "no records given"),
])
def test_bad_records_are_refused_with_the_problem_named(open_store, kwargs, message):
    store = open_store()
    with pytest.raises(InvalidRecordError, match=message):
        store.add(**kwargs)
    assert store.count() == 0


def test_a_duplicate_of_a_stored_id_is_refused(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(1), ids=["a"])
    with pytest.raises(InvalidRecordError, match="'a' is already in the store.*update"):
        store.add(embeddings=unit_rows(1), ids=["a"])


def test_unknown_keys_in_a_record_dict_are_refused(open_store):
    with pytest.raises(InvalidRecordError, match="unknown keys \\['vector'\\]"):
        open_store().add({"vector": [0.0] * 8, "embedding": [1.0] * 8})
