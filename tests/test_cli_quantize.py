"""`aios quantize MODEL -o OUT` (`aios.cli.quantize`)."""

import numpy as np
import pytest
import torch

from aios.cli import app as cli
from aios.io.weight_formats import export_safetensors
from aios.io.weights import load_weights
from aios.quant import QuantizedTensor


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    state = {"embed.weight": torch.randn(20, 64), "fc.weight": torch.randn(32, 64),
             "fc.bias": torch.randn(32), "head.weight": torch.randn(20, 32)}
    path = tmp_path / "model.pt"
    torch.save(state, path)
    return path


def test_quantize_writes_a_weight_file_and_prints_a_summary(tmp_path, checkpoint, capsys):
    out = tmp_path / "q.arrow"
    assert cli.main(["quantize", str(checkpoint), "--bits", "4", "--group-size", "32",
                     "-o", str(out)]) == 0
    weights = load_weights(out)
    assert isinstance(weights["fc.weight"], QuantizedTensor)
    assert weights["fc.weight"].bits == 4 and weights["fc.weight"].group_size == 32
    assert weights["embed.weight"].dtype == np.float16
    assert weights.metadata["bits"] == "4"
    printed = capsys.readouterr()
    assert "int4-asym g32" in printed.out and "TOTAL" in printed.out
    assert "smaller" in printed.out and "COSINE" in printed.out
    assert "quantizing to 4 bits" in printed.err  # the progress bar


def test_the_backend_flag_picks_the_quantizer(tmp_path, checkpoint, capsys):
    out = tmp_path / "q.arrow"
    assert cli.main(["quantize", str(checkpoint), "--backend", "reference", "--bits", "8",
                     "--symmetric", "-o", str(out)]) == 0
    assert load_weights(out)["fc.weight"].quant_type == "int8-sym"
    assert "with the reference quantizer" in capsys.readouterr().out


def test_a_safetensors_model_is_accepted(tmp_path, capsys):
    source = export_safetensors({"fc.weight": np.ones((4, 32), np.float32)},
                                tmp_path / "m.safetensors")
    assert cli.main(["quantize", str(source), "--bits", "2", "--group-size", "32",
                     "-o", str(tmp_path / "q.arrow")]) == 0
    assert load_weights(tmp_path / "q.arrow")["fc.weight"].bits == 2


def test_error_correction_uses_a_calibration_file(tmp_path, checkpoint, capsys):
    calibration = tmp_path / "calib.npz"
    np.savez(calibration, **{"fc.weight": np.random.default_rng(0).normal(size=(16, 64)),
                             "head.weight": np.random.default_rng(1).normal(size=(16, 32))})
    assert cli.main(["quantize", str(checkpoint), "--group-size", "32", "--error-correction",
                     "--calibration", str(calibration), "--keep", "*embed*",
                     "-o", str(tmp_path / "q.arrow")]) == 0
    assert load_weights(tmp_path / "q.arrow")["head.weight"].bits == 4


def test_error_correction_without_calibration_exits_2(tmp_path, checkpoint, capsys):
    assert cli.main(["quantize", str(checkpoint), "--error-correction",
                     "-o", str(tmp_path / "q.arrow")]) == 2
    assert "--calibration FILE" in capsys.readouterr().err


def test_bits_outside_2_4_8_are_a_usage_error(tmp_path, checkpoint, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["quantize", str(checkpoint), "--bits", "3", "-o", str(tmp_path / "q.arrow")])
    assert caught.value.code == 2
    assert "invalid choice: 3" in capsys.readouterr().err


def test_a_bad_group_size_exits_2_with_the_fix(tmp_path, checkpoint, capsys):
    assert cli.main(["quantize", str(checkpoint), "--group-size", "30",
                     "-o", str(tmp_path / "q.arrow")]) == 2
    assert "use 32, 64 or 128" in capsys.readouterr().err


def test_an_unreadable_model_exits_1_naming_the_formats(tmp_path, capsys):
    (tmp_path / "m.txt").write_text("not weights")
    assert cli.main(["quantize", str(tmp_path / "m.txt"), "-o", str(tmp_path / "q.arrow")]) == 1
    assert "not a model file aios reads" in capsys.readouterr().err


def test_quantize_has_help(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["quantize", "--help"])
    assert caught.value.code == 0
    assert "--group-size" in capsys.readouterr().out
