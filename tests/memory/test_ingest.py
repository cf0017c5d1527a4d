"""Text documents into the memory: chunked, embedded, stored with their source, once."""

import json

import pytest

from aios.errors import AiosError
from aios.memory import reference_store
from aios.memory.ingest import DOCUMENT, ingest, remember
from conftest import WordsEmbedder

FACTS = ("The river Quell flows into the Marn Sea. Its source is in the Oster hills.\n\n"
         "Lake Ivo lies north of Dorran. It freezes every winter.")


@pytest.fixture
def store(tmp_path):
    with reference_store(str(tmp_path / "store"), WordsEmbedder.dim) as s:
        yield s


@pytest.fixture
def docs(tmp_path):
    root = tmp_path / "docs"
    (root / "deep").mkdir(parents=True)
    (root / "facts.md").write_text(FACTS)
    (root / "deep" / "more.txt").write_text("Tarn castle stands on a rock.")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0")  # not a text suffix: not read
    return root


def records(store):
    return [r for b in store.batches() for r in b.to_pylist()]


def test_a_directory_adds_its_text_files_recursively_with_source_chunk_and_hash(store, docs):
    summary = ingest(store, WordsEmbedder(), [docs], chunk_size=60, chunk_overlap=0)
    assert sorted(summary.added) == sorted([str(docs / "deep" / "more.txt"),
                                            str(docs / "facts.md")])
    stored = records(store)
    assert summary.chunks == len(stored) == 4
    by_source = {}
    for r in stored:
        extra = json.loads(r["metadata"]["extra"])
        by_source.setdefault(r["metadata"]["source"], []).append((extra["chunk"], r["content"]))
        assert r["metadata"]["category"] == DOCUMENT and extra["embedder"] == "words"
        assert len(extra["sha256"]) == 64
    assert sorted(by_source[str((docs / "facts.md").resolve())]) == [
        (0, "The river Quell flows into the Marn Sea."),
        (1, "Its source is in the Oster hills."),
        (2, "Lake Ivo lies north of Dorran. It freezes every winter.")]


def test_stored_vectors_are_the_embedders_vectors_of_the_chunk_text(store, docs):
    import numpy as np

    ingest(store, WordsEmbedder(), [docs / "deep" / "more.txt"])
    [record] = records(store)
    np.testing.assert_allclose(record["embedding"], WordsEmbedder().embed([record["content"]])[0],
                               rtol=1e-6)


def test_adding_an_unchanged_file_again_is_a_no_op(store, docs):
    ingest(store, WordsEmbedder(), [docs])
    before = sorted(r["id"] for r in records(store))
    again = ingest(store, WordsEmbedder(), [docs])
    assert len(again.unchanged) == 2 and again.added == again.replaced == [] and again.chunks == 0
    assert sorted(r["id"] for r in records(store)) == before


def test_a_changed_file_replaces_all_of_its_old_chunks(store, docs):
    ingest(store, WordsEmbedder(), [docs], chunk_size=60, chunk_overlap=0)
    (docs / "facts.md").write_text("The river Quell is short.")
    summary = ingest(store, WordsEmbedder(), [docs], chunk_size=60, chunk_overlap=0)
    assert summary.replaced == [str(docs / "facts.md")] and summary.chunks == 1
    assert sorted(r["content"] for r in records(store)) == [
        "Tarn castle stands on a rock.", "The river Quell is short."]


def test_binary_and_non_utf8_files_are_skipped_with_a_warning_and_counted(store, tmp_path,
                                                                          capsys):
    (tmp_path / "blob.txt").write_bytes(b"abc\0def")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("Fine text.")
    summary = ingest(store, WordsEmbedder(), [tmp_path / n for n in
                                              ("blob.txt", "latin1.txt", "ok.txt")])
    assert [why for _, why in summary.skipped] == ["binary file", "not UTF-8 text (byte 3)"]
    assert summary.added == [str(tmp_path / "ok.txt")]
    assert "2 skipped" in str(summary)
    err = capsys.readouterr().err
    assert "skipped" in err and "blob.txt: binary file" in err


def test_a_missing_path_is_an_error_naming_it(store, tmp_path):
    with pytest.raises(AiosError, match="nope.txt does not exist"):
        ingest(store, WordsEmbedder(), [tmp_path / "nope.txt"])


def test_a_store_of_another_dimension_is_refused_naming_both(tmp_path, docs):
    with reference_store(str(tmp_path / "other"), 8) as other:
        with pytest.raises(AiosError, match="holds 8-dimensional vectors but the embedder "
                                            "'words' makes 64-dimensional"):
            ingest(other, WordsEmbedder(), [docs])


def test_remember_stores_prompt_and_output_as_one_generation_passage(store):
    remember(store, WordsEmbedder(), "The river Quell", "The river Quell flows fast.")
    [record] = records(store)
    assert record["content"] == "The river Quell flows fast."
    assert record["metadata"]["category"] == "generation"
    assert json.loads(record["metadata"]["extra"])["prompt"] == "The river Quell"


def test_a_file_named_twice_or_also_inside_a_named_directory_is_read_once(store, docs):
    summary = ingest(store, WordsEmbedder(), [docs, docs / "facts.md", docs / "facts.md"])
    assert len(summary.added) == 2 and summary.skipped == []
