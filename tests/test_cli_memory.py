"""`aios memory ...` on a real directory, in-process (the store code is shared with Python)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from aios import cli


@pytest.fixture
def vectors(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.random.default_rng(0).normal(size=(12_000, 8)).astype(np.float32))
    return path


@pytest.fixture
def notes(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(
        json.dumps({"id": f"n{i}", "embedding": [float(i + 1)] + [0.0] * 7, "content": f"note {i}",
                    "category": "notes", "quality": i / 10}) + "\n" for i in range(3)))
    return path


def aios(*argv):
    return cli.main(["memory", *map(str, argv)])


def test_add_creates_a_store_and_shows_a_progress_bar_for_large_files(tmp_path, vectors,
                                                                      capsys):
    assert aios("add", "--path", tmp_path / "s", "--dim", 8, vectors) == 0
    out = capsys.readouterr()
    assert "added 12000 records" in out.out and "adding: 100%" in out.err


def test_search_prints_the_nearest_records_first(tmp_path, notes, capsys):
    aios("add", "--path", tmp_path / "s", "--dim", 8, notes)
    capsys.readouterr()
    assert aios("search", "--path", tmp_path / "s", "--query", json.dumps([1.0] + [0] * 7),
                "-k", 2, "--metric", "dot", "--json") == 0
    found = json.loads(capsys.readouterr().out)[0]
    assert [r["id"] for r in found] == ["n2", "n1"] and found[0]["score"] == 3.0


def test_search_filters_by_quality(tmp_path, notes, capsys):
    aios("add", "--path", tmp_path / "s", "--dim", 8, notes)
    capsys.readouterr()
    aios("search", "--path", tmp_path / "s", "--query", json.dumps([1.0] * 8), "--min-quality",
         0.05)
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[1] for line in lines) == ["n1", "n2"]


def test_stats_compact_and_export_work_on_the_same_directory(tmp_path, vectors, capsys):
    store = tmp_path / "s"
    aios("add", "--path", store, "--dim", 8, vectors)
    assert aios("stats", "--path", store, "--json") == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["records"] == 12000
    assert aios("compact", "--path", store, "--max-records", 100) == 0
    assert "12000 records before, 100 after" in capsys.readouterr().out
    assert aios("export", "--path", store, tmp_path / "out.parquet") == 0
    assert pq.read_metadata(tmp_path / "out.parquet").num_rows == 100


def test_get_and_delete_by_id(tmp_path, notes, capsys):
    aios("add", "--path", tmp_path / "s", "--dim", 8, notes)
    assert aios("delete", "--path", tmp_path / "s", "n0", "missing") == 0
    assert "deleted 1 of 2" in capsys.readouterr().out
    assert aios("get", "--path", tmp_path / "s", "n0") == 2
    assert "not in the store" in capsys.readouterr().err


def test_a_query_of_the_wrong_dimension_exits_2_naming_the_problem(tmp_path, notes, capsys):
    aios("add", "--path", tmp_path / "s", "--dim", 8, notes)
    assert aios("search", "--path", tmp_path / "s", "--query", "[1, 2]") == 2
    assert "8-dimensional" in capsys.readouterr().err


def test_adding_to_a_new_store_without_dim_exits_2(tmp_path, notes, capsys):
    assert aios("add", "--path", tmp_path / "s", notes) == 2
    assert "--dim N" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["add", "search", "get", "delete", "stats", "compact",
                                    "export"])
def test_every_memory_action_has_help(action, capsys):
    with pytest.raises(SystemExit) as caught:
        aios(action, "--help")
    assert caught.value.code == 0
    assert f"usage: aios memory {action}" in capsys.readouterr().out


def test_add_can_persist_int8_copies_of_the_segments(tmp_path, vectors, capsys):
    assert aios("add", "--path", tmp_path / "s", "--dim", 8, "--copies", "i8", vectors) == 0
    assert len(list((tmp_path / "s").glob("seg-*.i8.arrow"))) == 1
    aios("stats", "--path", tmp_path / "s", "--json")
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["copies"] == ["i8"]
