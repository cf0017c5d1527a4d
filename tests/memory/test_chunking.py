"""Chunking documents into passages: whole sentences, paragraph aware, with overlap."""

import itertools

import pytest

from aios.memory.chunking import chunk_text, sentences

TEXT = ("The river Quell flows into the Marn Sea. Its source is in the Oster hills. "
        "Boats carry salt down it.\n\n"
        "Lake Ivo lies north of Dorran. It freezes every winter! Does anyone skate on it? "
        "Many do.")


def test_sentences_split_at_end_punctuation_and_keep_it():
    assert sentences("One. Two!  Three?\nFour \"five.\" Six") == [
        "One.", "Two!", "Three?", 'Four "five."', "Six"]


def test_every_chunk_fits_the_size_and_ends_at_a_sentence_end():
    chunks = chunk_text(TEXT, size=90, overlap=0)
    assert all(len(c) <= 90 for c in chunks)
    assert all(c.endswith((".", "!", "?")) for c in chunks)
    assert " ".join(chunks) == " ".join(TEXT.split())  # no overlap: the text exactly, in order


def test_a_new_paragraph_starts_a_new_chunk_once_the_current_one_is_half_full():
    chunks = chunk_text(TEXT, size=200, overlap=0)
    assert chunks[0].endswith("Boats carry salt down it.")
    assert chunks[1].startswith("Lake Ivo")


def test_consecutive_chunks_share_whole_sentences_up_to_the_overlap():
    chunks = chunk_text(TEXT, size=90, overlap=45)
    assert len(chunks) >= 3
    for before, after in itertools.pairwise(chunks):
        shared = sentences(after)[0]
        assert before.endswith(shared) and len(shared) <= 45


def test_a_sentence_longer_than_a_chunk_is_cut_at_spaces():
    chunks = chunk_text("word " * 50, size=32, overlap=0)
    assert all(len(c) <= 32 and not c.startswith(" ") for c in chunks)
    assert " ".join(chunks).split() == ["word"] * 50


def test_empty_or_blank_text_has_no_chunks():
    assert chunk_text("  \n\n \t") == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_a_size_or_overlap_that_cannot_work_is_refused(size, overlap):
    with pytest.raises(ValueError, match="chunk"):
        chunk_text(TEXT, size=size, overlap=overlap)
