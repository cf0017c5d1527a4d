"""Parquet, safetensors and torch checkpoints (`aios.io.weight_formats`)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from aios.errors import WeightFileError
from aios.io.weight_formats import (
    export_parquet,
    export_safetensors,
    import_parquet,
    import_safetensors,
    read_model,
)
from aios.io.weights import load_weights, save_weights
from aios.quant import QuantizedTensor, ReferenceQuantizer, dequantize


@pytest.fixture
def model():
    rng = np.random.default_rng(0)
    tensors = {"embed.weight": rng.normal(size=(10, 16)).astype(np.float32),
               "fc.weight": rng.normal(size=(6, 70)).astype(np.float32),
               "fc.bias": rng.normal(size=6).astype(np.float32),
               "step": np.array([3], np.int64)}
    quantized = ReferenceQuantizer(bits=4, group_size=32).quantize_model(tensors)
    quantized["sym"] = ReferenceQuantizer(bits=2, group_size=32, symmetric=True).quantize(
        rng.normal(size=(3, 32)).astype(np.float32))
    return quantized


def assert_same(a, b):
    assert sorted(a) == sorted(b)  # safetensors stores tensors in its own order
    for name in a:
        if isinstance(a[name], QuantizedTensor):
            for field in ("shape", "dtype", "bits", "group_size", "symmetric", "padding"):
                assert getattr(a[name], field) == getattr(b[name], field), (name, field)
            np.testing.assert_array_equal(a[name].data, b[name].data)
            np.testing.assert_array_equal(a[name].scales, b[name].scales)
            if a[name].zero_points is not None:
                np.testing.assert_array_equal(a[name].zero_points, b[name].zero_points)
        else:
            assert a[name].dtype == b[name].dtype
            np.testing.assert_array_equal(a[name], b[name])


def test_parquet_has_the_arrowquant_columns(tmp_path, model):
    path = export_parquet(model, tmp_path / "m.parquet")
    table = pq.read_table(path)
    assert table.column_names == ["layer_name", "shape", "dtype", "data", "num_params",
                                  "quant_type", "scales", "zero_points", "quant_axis",
                                  "group_size"]
    row = table.to_pylist()[1]
    assert row["layer_name"] == "fc.weight" and row["quant_type"] == "int4-asym"
    assert row["num_params"] == 420 and row["group_size"] == 32 and row["quant_axis"] == 1


def test_parquet_round_trips_quantized_and_plain_tensors_exactly(tmp_path, model):
    assert_same(import_parquet(export_parquet(model, tmp_path / "m.parquet")), model)


def test_parquet_from_a_newer_format_version_is_refused(tmp_path, model):
    path = export_parquet(model, tmp_path / "m.parquet")
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({b"aios.format_version": b"99"}), path)
    with pytest.raises(WeightFileError, match="newer than this aios reads"):
        import_parquet(path)


def test_safetensors_round_trips_quantized_and_plain_tensors_exactly(tmp_path, model):
    assert_same(import_safetensors(export_safetensors(model, tmp_path / "m.safetensors")), model)


def test_safetensors_export_can_dequantize_for_other_tools(tmp_path, model):
    from safetensors.torch import load_file

    state = load_file(export_safetensors(model, tmp_path / "m.safetensors", dequantized=True))
    assert state["fc.weight"].dtype == torch.float32
    np.testing.assert_array_equal(state["fc.weight"].numpy(), dequantize(model["fc.weight"]))
    assert "fc.weight:scales" not in state


def test_safetensors_keeps_the_quantization_layout_in_its_header(tmp_path, model):
    from safetensors import safe_open

    with safe_open(str(export_safetensors(model, tmp_path / "m.st")), framework="np") as f:
        layout = json.loads(f.metadata()["aios.quant"])
    assert layout["fc.weight"]["bits"] == 4 and layout["fc.weight"]["padding"] == 26


def test_read_model_recognises_every_format(tmp_path, model):
    arrow = save_weights(tmp_path / "m.arrow", model)
    assert_same(dict(read_model(arrow)), model)
    assert_same(read_model(export_parquet(model, tmp_path / "m.parquet")), model)
    assert_same(read_model(export_safetensors(model, tmp_path / "m.safetensors")), model)
    assert isinstance(read_model(arrow), type(load_weights(arrow)))


def test_read_model_loads_a_torch_state_dict(tmp_path):
    linear = torch.nn.Linear(4, 3)
    torch.save({"state_dict": linear.state_dict()}, tmp_path / "m.pt")
    state = read_model(tmp_path / "m.pt")
    torch.testing.assert_close(state["weight"], linear.weight.detach())


def test_a_torch_file_without_a_state_dict_is_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / "m.pt")
    with pytest.raises(WeightFileError, match="does not hold a state_dict"):
        read_model(tmp_path / "m.pt")


def test_an_unknown_file_is_refused_with_the_supported_formats(tmp_path):
    (tmp_path / "m.txt").write_text("hello")
    with pytest.raises(WeightFileError, match=r"\.safetensors, Parquet weights or a torch"):
        read_model(tmp_path / "m.txt")
