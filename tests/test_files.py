import pytest

from aios.io.files import write_atomic


def test_a_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "data.bin"
    write_atomic(target, lambda f: f.write(b"first"))
    write_atomic(target, lambda f: f.write(b"second"))
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["data.bin"]


def test_a_write_that_fails_leaves_the_old_content_and_no_temporary(tmp_path):
    target = tmp_path / "data.bin"
    write_atomic(target, lambda f: f.write(b"old"))

    def half_then_fail(f):
        f.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
