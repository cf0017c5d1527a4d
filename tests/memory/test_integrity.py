"""Damage is reported, never taken silently: log frames, segment checksums, check and recover.

Each case of issue 23's "damaged WAL" and "no checksum" findings is one test here.
"""

import json
import struct

import pytest

from aios.cli import main
from aios.memory import CorruptStoreError, open_memory, wal
from aios.memory.integrity import check, recover

from .conftest import unit_rows


def logged_store(open_store, n=15):
    """A store whose `n` records are all in the write-ahead log (one frame each)."""
    store = open_store()
    for i in range(n):
        store.add(embeddings=unit_rows(1, seed=i), ids=[f"r{i}"], contents=f"text {i}")
    store._release()
    return store.path, next(store.path.glob("wal-*.log"))


def frame_offsets(log):
    data = log.read_bytes()
    offsets, at = [], len(wal.MAGIC)
    while at < len(data):
        offsets.append(at)
        at += wal.FRAME.size + wal.FRAME.unpack_from(data, at)[2]
    return offsets


def damage(path, at, value=0xFF):
    data = bytearray(path.read_bytes())
    data[at] ^= value
    path.write_bytes(bytes(data))


def test_a_damaged_length_field_of_the_first_frame_is_corruption_not_a_torn_tail(open_store):
    path, log = logged_store(open_store)
    damage(log, frame_offsets(log)[0] + 8 + 7)  # the top byte of the u64 length: huge
    with pytest.raises(CorruptStoreError, match="damaged at byte 8.*header"):
        open_store(path)
    with pytest.raises(CorruptStoreError):  # read-only too: nothing vanishes with exit 0
        open_memory(path, read_only=True)


def test_a_damaged_last_frame_is_corruption_not_a_torn_tail(open_store):
    path, log = logged_store(open_store)
    last = frame_offsets(log)[-1]
    damage(log, last + wal.FRAME.size + 5)  # inside the payload, every byte present
    with pytest.raises(CorruptStoreError, match=f"damaged at byte {last}.*payload"):
        open_store(path)


def reference_store(tmp_path):
    return lambda path=None, **options: open_memory(path or tmp_path / "s", 8, **options)


def test_every_flipped_byte_of_a_log_is_detected(tmp_path):  # the log is the same on backends
    _, log = logged_store(reference_store(tmp_path), n=1)
    pristine = log.read_bytes()
    for at in range(len(pristine)):
        data = bytearray(pristine)
        data[at] ^= 0x01
        log.write_bytes(bytes(data))
        with pytest.raises(CorruptStoreError):
            wal.read(log)


def test_a_log_cut_anywhere_inside_its_last_frame_drops_only_that_frame(tmp_path):
    open_store = reference_store(tmp_path)
    path, log = logged_store(open_store, n=2)
    pristine = log.read_bytes()
    last = frame_offsets(log)[-1]
    for cut in range(last + 1, len(pristine)):
        log.write_bytes(pristine[:cut])
        entries, valid = wal.read(log)
        assert (len(entries), valid) == (1, last), cut
    log.write_bytes(pristine[:last + 10])
    with open_store(path) as store:  # and the writer truncates the torn tail before appending
        assert store.count() == 1
        store.add(embeddings=unit_rows(1, seed=99), ids=["after"])
    with open_store(path) as store:
        assert store.count() == 2 and store.get("after").num_rows == 1


def test_a_log_written_by_an_older_aios_is_still_read_and_appended_to(tmp_path):
    from aios.memory import schema

    batch = schema.to_batch(None, dim=8, embeddings=unit_rows(2), ids=["a", "b"])
    store = open_memory(tmp_path / "s", 8)
    store._release()
    log = next((tmp_path / "s").glob("wal-*.log"))
    log.write_bytes(wal.MAGIC_V1 + wal.frame(wal.ADD, wal.encode(batch), version=1))
    with open_memory(tmp_path / "s") as again:
        assert again.count() == 2
        again.add(embeddings=unit_rows(1, seed=3), ids=["c"])  # a v1 frame, in a v1 log
        assert wal.Writer(log, log.stat().st_size).version == 1
    with open_memory(tmp_path / "s") as again:
        assert sorted(again.to_table().column("id").to_pylist()) == ["a", "b", "c"]


def test_a_missing_log_is_a_clear_error(open_store):
    path, log = logged_store(open_store, n=2)
    log.unlink()
    with pytest.raises(CorruptStoreError, match="missing.*aios memory recover"):
        open_store(path)


def flushed_store(open_store, copies=None):
    store = open_store(copies=copies) if copies else open_store()
    store.add(embeddings=unit_rows(20), ids=[f"s{i}" for i in range(20)],
              contents=[f"segment text {i}" for i in range(20)], category="c")
    store.flush()
    store.add(embeddings=unit_rows(3, seed=5), ids=["w0", "w1", "w2"])
    store._release()
    return store.path


def test_a_flipped_content_byte_in_a_segment_fails_its_checksum_on_first_read(open_store):
    path = flushed_store(open_store)
    segment = next(path.glob("seg-*-[0-9][0-9][0-9][0-9].arrow"))
    data = segment.read_bytes()
    at = data.index(b"segment text 7")
    damage(segment, at + 3, 0x01)  # 'm' -> 'l': valid UTF-8, same length, same offsets
    store = open_store(path)  # opening checks structure only
    with pytest.raises(CorruptStoreError, match="fail their checksum"):
        store.get("s7")
    with pytest.raises(CorruptStoreError, match="fail their checksum"):
        store.search(unit_rows(1)[0], k=3)


def test_a_flipped_byte_of_a_persisted_copy_fails_its_checksum(open_store):
    path = flushed_store(open_store, copies="i8")
    copy = next(path.glob("seg-*.i8.arrow"))
    damage(copy, copy.stat().st_size // 2, 0x01)
    store = open_store(path)
    with pytest.raises(CorruptStoreError, match="fail their checksum"):
        store.search(unit_rows(1)[0], k=3, precision="i8")


def test_check_verifies_everything_and_reports_each_damage(open_store):
    path = flushed_store(open_store, copies="i8")
    report = check(path)
    assert report.ok and (report.segments, report.records, report.log_frames) == (1, 20, 1)
    damage(next(path.glob("seg-*-[0-9][0-9][0-9][0-9].arrow")), 2000, 0x01)
    log = next(path.glob("wal-*.log"))
    damage(log, len(wal.MAGIC) + 30)
    problems = check(path).problems
    assert len(problems) == 2
    assert "seg-" in problems[0] and "checksum" in problems[0]
    assert "write-ahead log" in problems[1]


def test_recover_keeps_every_frame_and_segment_that_verifies(open_store):
    path, log = logged_store(open_store, n=15)
    damage(log, frame_offsets(log)[0] + 8 + 7)  # the first frame's length: 14 frames follow
    report = recover(path)
    assert report.log_frames_kept == 14 and report.log_damage
    assert (report.moved_to / log.name).exists()  # the damaged log is kept aside
    with open_store(path) as store:
        assert sorted(store.to_table().column("id").to_pylist()) == \
            sorted(f"r{i}" for i in range(1, 15))
    assert check(path).ok


def test_recover_drops_a_damaged_segment_and_counts_what_is_lost(open_store):
    path = flushed_store(open_store)
    segment = next(path.glob("seg-*-[0-9][0-9][0-9][0-9].arrow"))
    damage(segment, 2000, 0x01)
    report = recover(path)
    assert report.dropped_segments == [segment.name] and report.records_lost == 20
    with open_store(path) as store:
        assert sorted(store.to_table().column("id").to_pylist()) == ["w0", "w1", "w2"]
    assert (report.moved_to / segment.name).exists()


def test_recover_on_an_intact_store_changes_nothing(open_store):
    path = flushed_store(open_store)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    report = recover(path)
    assert not report.changed
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    with open_store(path) as store:
        assert store.count() == 23


def test_memory_check_and_recover_commands(open_store, capsys, backend):
    path, log = logged_store(open_store, n=5)
    assert main(["memory", "check", "--path", str(path)]) == 0
    assert "ok:" in capsys.readouterr().out
    damage(log, frame_offsets(log)[2] + wal.FRAME.size + 3)
    assert main(["memory", "check", "--path", str(path)]) == 1
    assert "aios memory recover" in capsys.readouterr().err
    assert main(["memory", "search", "--path", str(path), "--query", json.dumps([1.0] * 8),
                 "--backend", backend]) == 1
    assert main(["memory", "recover", "--path", str(path)]) == 0
    assert "kept the 4 frame(s)" in capsys.readouterr().out
    assert main(["memory", "check", "--path", str(path)]) == 0


def test_a_store_written_before_checksums_opens_and_check_notes_it(open_store):
    path = flushed_store(open_store)
    manifest = path / "MANIFEST.json"
    document = json.loads(manifest.read_text())
    for entry in document["body"]["segments"]:
        entry.pop("crc32")
    import zlib
    body = json.dumps(document["body"], sort_keys=True, separators=(",", ":"))
    document["crc32"] = zlib.crc32(body.encode())
    manifest.write_text(json.dumps(document))
    with open_store(path) as store:
        assert store.count() == 23
    report = check(path)
    assert report.ok and report.unchecked


def test_the_frame_layout_is_as_documented():
    payload = b"xyz"
    framed = wal.frame(wal.ADD, payload)
    magic, kind, length, header_crc, payload_crc = wal.FRAME.unpack_from(framed)
    import zlib
    assert (magic, kind, length) == (b"AFRM", wal.ADD, 3)
    assert header_crc == zlib.crc32(framed[:16]) and payload_crc == zlib.crc32(payload)
    assert framed[wal.FRAME.size:] == payload and struct.calcsize("<4sB3xQII") == 24
