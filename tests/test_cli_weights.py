"""`aios weights check`: every checksum of a weight file or model directory, now."""

import numpy as np

from aios.cli import app as cli
from aios.io.weights import save_weights


def model_dir(tmp_path):
    save_weights(tmp_path / "backbone.arrow", {"w": np.ones((64, 64), np.float32)})
    save_weights(tmp_path / "text.arrow", {"h": np.arange(100, dtype=np.float32)})
    return tmp_path


def test_an_intact_model_directory_checks_ok(tmp_path, capsys):
    assert cli.main(["weights", "check", str(model_dir(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.count("ok: ") == 2 and "1 tensors" in out


def test_a_flipped_data_byte_fails_the_check_naming_the_file(tmp_path, capsys):
    directory = model_dir(tmp_path)
    path = directory / "backbone.arrow"
    data = bytearray(path.read_bytes())
    at = data.index(np.ones(1, np.float32).tobytes())  # inside the tensor's values
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    assert cli.main(["weights", "check", str(directory)]) == 1
    captured = capsys.readouterr()
    assert "backbone.arrow" in captured.err and "checksum" in captured.err
    assert "ok: " in captured.out and "text.arrow" in captured.out


def test_a_damaged_structure_is_an_error_not_a_crash(tmp_path, capsys):
    path = save_weights(tmp_path / "m.arrow", {"w": np.ones(8, np.float32)})
    path.write_bytes(path.read_bytes()[:-20])
    assert cli.main(["weights", "check", str(path)]) == 1
    assert "not a complete aios weight file" in capsys.readouterr().err


def test_a_missing_path_exits_1_with_one_line(tmp_path, capsys):
    assert cli.main(["weights", "check", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
