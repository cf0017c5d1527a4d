"""`aios memory ...` on a real directory, in-process (the store code is shared with Python)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from aios.cli import app as cli
from conftest import WordsEmbedder


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


@pytest.fixture
def words(monkeypatch):
    """The installed plugins plus the toy `words` embedder, which `auto` then picks."""
    from aios import registry as registry_module
    from conftest import with_words_embedder

    registry = with_words_embedder(registry_module.Registry.discover())
    monkeypatch.setattr(registry_module, "default_registry", lambda: registry)
    return registry


def test_add_chunks_embeds_and_stores_text_files_and_directories(tmp_path, words, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The river Quell flows into the Marn Sea.\n\nTarn is a castle.")
    (tmp_path / "b.txt").write_text("Lake Ivo freezes.")
    assert aios("add", "--path", tmp_path / "s", docs, tmp_path / "b.txt",
                "--embedder", "words") == 0
    assert "2 files added, 0 replaced, 0 unchanged, 0 skipped; 2 chunks stored with words" in \
        capsys.readouterr().out
    assert aios("search", "--path", tmp_path / "s", "--query", json.dumps([1.0] + [0.0] * 63)) == 0


def test_chunk_size_comes_from_the_memory_config(tmp_path, words, capsys):
    (tmp_path / "a.txt").write_text("One sentence here. Another sentence there.")
    assert cli.main(["--set", "memory.chunk_size=24", "--set", "memory.chunk_overlap=0",
                     "memory", "add", "--path", str(tmp_path / "s"),
                     str(tmp_path / "a.txt")]) == 0
    assert "2 chunks stored" in capsys.readouterr().out


def test_re_adding_reports_unchanged_files_and_skips_binary_ones(tmp_path, words, capsys):
    (tmp_path / "a.txt").write_text("Some text.")
    (tmp_path / "b.txt").write_bytes(b"\0\1\2")
    aios("add", "--path", tmp_path / "s", tmp_path / "a.txt")
    capsys.readouterr()
    assert aios("add", "--path", tmp_path / "s", tmp_path / "a.txt", tmp_path / "b.txt") == 0
    out = capsys.readouterr()
    assert "0 files added, 0 replaced, 1 unchanged, 1 skipped" in out.out
    assert "b.txt: binary file" in out.err


def test_adding_text_to_a_store_of_another_dimension_exits_1_naming_both(tmp_path, words,
                                                                         notes, capsys):
    aios("add", "--path", tmp_path / "s", "--dim", 8, notes)
    (tmp_path / "a.txt").write_text("Some text.")
    assert aios("add", "--path", tmp_path / "s", tmp_path / "a.txt") == 1
    assert "holds 8-dimensional vectors but the embedder 'words' makes 64" in \
        capsys.readouterr().err


def test_search_by_text_uses_the_stores_embedder_and_shows_passage_score_and_source(
        tmp_path, words, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "river.txt").write_text("The river Quell flows into the Marn Sea.")
    (docs / "bread.txt").write_text("Bread is baked from flour and yeast.")
    assert aios("add", "--path", tmp_path / "s", docs, "--embedder", "words") == 0
    capsys.readouterr()
    # the config's embedder is another one: the store's own (`words`) must still be used
    assert cli.main(["memory", "search", "--path", str(tmp_path / "s"), "--text",
                     "where does the river Quell flow", "-k", "2",
                     "--set", "memory.embedder=minilm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    query = WordsEmbedder().embed(["where does the river Quell flow"])[0]
    best = WordsEmbedder().embed(["The river Quell flows into the Marn Sea."])[0]
    assert lines[0] == f"{float(query @ best):.3f}  {docs / 'river.txt'}"
    assert lines[1] == "    The river Quell flows into the Marn Sea."
    assert lines[2].endswith(str(docs / "bread.txt"))
    assert float(lines[0].split()[0]) > float(lines[2].split()[0])


def test_search_with_a_missing_query_file_exits_2_naming_it(tmp_path, notes, capsys):
    aios("add", "--path", tmp_path / "s", "--dim", 8, notes)
    capsys.readouterr()
    assert aios("search", "--path", tmp_path / "s", "--query-file", tmp_path / "missing.npy") == 2
    assert capsys.readouterr().err == (f"aios: error: --query-file {tmp_path / 'missing.npy'}: "
                                       "no such file; give a .npy file with a query vector "
                                       "(np.save), or search by words with --text\n")
