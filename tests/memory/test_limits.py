"""Every limit is validated at the door (issue 23, items 4, 6, 9, 10, 12): retention values,
k, vector magnitudes, quality, and inputs that used to end in a traceback."""

import json
import signal
import time

import numpy as np
import pytest

from aios.cli import main
from aios.memory import InvalidRecordError, StoreLockedError
from aios.memory.chunking import chunk_text
from aios.memory.schema import MAX_COMPONENT

from .conftest import unit_rows


@pytest.mark.parametrize("policy, problem", [
    ({"max_records": -5}, "max_records must be a positive integer"),
    ({"max_records": 0}, "max_records must be a positive integer"),
    ({"max_records": 2.5}, "max_records must be a positive integer"),
    ({"max_age_days": -1}, "max_age_days must be a positive number of days"),
    ({"max_age_days": float("nan")}, "max_age_days must be a positive number"),
    ({"min_quality": float("inf")}, "min_quality must be a finite number"),
])
def test_an_invalid_retention_is_refused_and_never_saved(open_store, policy, problem):
    store = open_store()
    store.add(embeddings=unit_rows(10), ids=[f"r{i}" for i in range(10)])
    with pytest.raises(InvalidRecordError, match=problem):
        store.compact(policy)
    with pytest.raises(InvalidRecordError, match=problem):
        open_store(store.path.parent / "other", retention=policy)
    assert store.compact() == {"before": 10, "after": 10, "dropped": 0}  # nothing forgotten
    assert store.stats()["retention"] == {}


def test_the_cli_refuses_a_negative_retention_with_exit_2(open_store, backend, capsys):
    store = open_store()
    store.add(embeddings=unit_rows(4), ids=list("abcd"))
    store.close()
    assert main(["memory", "compact", "--path", str(store.path), "--backend", backend,
                 "--max-records", "-5"]) == 2
    assert "max_records must be a positive integer" in capsys.readouterr().err
    assert open_store().count() == 4


@pytest.mark.parametrize("value", [3e38, MAX_COMPONENT * 1.5, -1e20])
def test_vectors_beyond_the_finite_range_are_refused(open_store, value):
    store = open_store()
    vector = np.zeros(8, np.float32)
    vector[0] = value
    with pytest.raises(InvalidRecordError, match="beyond"):
        store.add(embeddings=vector, ids=["big"])
    store.add(embeddings=unit_rows(3), ids=["a", "b", "c"])
    with pytest.raises(InvalidRecordError, match="beyond"):
        store.search(vector, k=2, metric="l2")


def test_vectors_at_the_edge_of_the_range_give_the_same_answers_on_every_metric(open_store):
    dim = 65536  # the largest dimension: the range is what keeps its scores finite
    store = open_store(dim=dim)
    rows = np.sign(unit_rows(6, dim)) * np.float32(MAX_COMPONENT)
    store.add(embeddings=rows, ids=[f"r{i}" for i in range(6)])
    for metric in ("cosine", "dot", "l2"):
        found = store.search(rows[3], k=1, metric=metric)
        assert found.ids == ["r3"] and np.isfinite(found.scores).all(), metric


@pytest.mark.parametrize("quality", [1e300, -1e39, float("nan")])
def test_a_quality_beyond_float32_is_refused(open_store, quality):
    with pytest.raises(InvalidRecordError, match="quality"):
        open_store().add(embeddings=unit_rows(1), ids=["q"], quality=quality)


def test_a_second_writer_in_the_same_process_is_told_so(open_store):
    store = open_store()
    with pytest.raises(StoreLockedError, match="already open for writing in this process"):
        open_store(store.path)


def test_an_object_npy_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert main(["memory", "add", "--path", str(tmp_path / "s"), "--dim", "8", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a numeric .npy array" in err and "Traceback" not in err


def test_deeply_nested_json_lines_are_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["memory", "add", "--path", str(tmp_path / "s"), "--dim", "8", str(path)]) == 2
    assert "nests JSON too deeply" in capsys.readouterr().err


def test_terminal_escapes_in_content_are_printed_visibly(tmp_path, capsys):
    path = tmp_path / "evil.jsonl"
    path.write_text(json.dumps({"id": "e\x1b]0;owned\x07", "embedding": [1.0] + [0.0] * 7,
                                "content": "\x1b[2J\x1b[31mred\x1b[0m"}) + "\n")
    main(["memory", "add", "--path", str(tmp_path / "s"), "--dim", "8", str(path)])
    capsys.readouterr()
    assert main(["memory", "search", "--path", str(tmp_path / "s"), "--query",
                 json.dumps([1.0] + [0.0] * 7)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mred" in out and "e\\x1b]0;owned\\x07" in out


def test_chunking_a_long_line_without_sentence_ends_is_linear(monkeypatch):
    """16 MB in one line: the quadratic version needed minutes (4 MB took 10 s); this must
    finish well inside a minute even on a loaded machine, and cover the text exactly."""
    text = "word " * ((16 << 20) // 5)

    def too_slow(*_):
        raise TimeoutError("chunking 16 MB took over 60 s: not linear")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(60)
    try:
        start = time.perf_counter()
        chunks = chunk_text(text, size=200, overlap=0)
        elapsed = time.perf_counter() - start
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert all(len(c) <= 200 for c in chunks)
    assert " ".join(chunks) == text.strip()
    assert elapsed < 60


def test_a_space_less_run_is_cut_hard_at_the_chunk_size():
    chunks = chunk_text("x" * 1000, size=300, overlap=0)
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
