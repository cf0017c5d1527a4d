"""aios weight files: Arrow IPC, memory-mapped, aligned, checksummed (`aios.io.weights`)."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
import torch

from aios.errors import WeightFileError
from aios.io.weights import ALIGNMENT, FORMAT_VERSION, load_weights, save_weights
from aios.quant import QuantizedTensor, ReferenceQuantizer


def gaussian(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [False, True])
def test_quantize_write_mmap_load_dequantize_round_trips(tmp_path, bits, group_size, symmetric):
    quantizer = ReferenceQuantizer(bits=bits, group_size=group_size, symmetric=symmetric)
    q = quantizer.quantize(gaussian((24, 200)), name="w")
    save_weights(tmp_path / "m.arrow", {"w": q})
    loaded = load_weights(tmp_path / "m.arrow")["w"]
    assert (loaded.shape, loaded.bits, loaded.group_size, loaded.padding) == \
        (q.shape, bits, group_size, q.padding)
    np.testing.assert_array_equal(loaded.data, q.data)
    np.testing.assert_array_equal(loaded.scales, q.scales)
    assert (loaded.zero_points is None) == symmetric
    np.testing.assert_array_equal(quantizer.dequantize(loaded), quantizer.dequantize(q))


def test_plain_tensors_keep_dtype_shape_and_values(tmp_path):
    tensors = {"f32": gaussian((3, 4)), "f16": gaussian((5,)).astype(np.float16),
               "i64": np.arange(6, dtype=np.int64).reshape(2, 3), "flag": np.array([True, False]),
               "scalar": np.float32(2.5), "empty": np.zeros((0, 4), np.float32),
               "torch": torch.arange(4, dtype=torch.int32)}
    loaded = load_weights(save_weights(tmp_path / "m.arrow", tensors))
    assert list(loaded) == list(tensors)
    for name, value in tensors.items():
        expected = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        assert loaded[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(loaded[name], expected)


def test_tensors_are_read_only_views_of_the_mapped_file_on_64_byte_boundaries(tmp_path):
    tensors = {f"t{i}": gaussian((i + 1, 7), i) for i in range(5)}
    tensors["q"] = ReferenceQuantizer(group_size=32).quantize(gaussian((3, 40)))
    loaded = load_weights(save_weights(tmp_path / "m.arrow", tensors))
    for name in tensors:
        data = loaded[name].data if name == "q" else loaded[name]
        assert data.ctypes.data % ALIGNMENT == 0, name
        assert not data.flags.writeable and not data.flags.owndata, name


def test_metadata_comes_back(tmp_path):
    path = save_weights(tmp_path / "m.arrow", {"a": np.ones(2)}, metadata={"model": "tiny"})
    weights = load_weights(path)
    assert weights.metadata == {"model": "tiny"} and weights.format_version == FORMAT_VERSION


def test_a_missing_tensor_names_the_file(tmp_path):
    weights = load_weights(save_weights(tmp_path / "m.arrow", {"a": np.ones(2)}))
    with pytest.raises(KeyError, match="holds no tensor 'b'"):
        weights["b"]


def test_a_truncated_file_is_refused(tmp_path):
    path = save_weights(tmp_path / "m.arrow", {"a": gaussian((64, 64))})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match="not a complete aios weight file"):
        load_weights(path)


def test_a_flipped_byte_fails_the_checksum_of_its_tensor(tmp_path):
    w = gaussian((64, 64))
    path = save_weights(tmp_path / "m.arrow", {"ok": np.ones(3), "w": w})
    data = bytearray(path.read_bytes())
    at = bytes(data).find(w.tobytes()[:64])
    data[at + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    weights = load_weights(path)
    assert weights["ok"].tolist() == [1, 1, 1]  # other tensors stay readable
    with pytest.raises(WeightFileError, match="'w' fails its checksum"):
        weights["w"]
    with pytest.raises(WeightFileError, match="checksum"):
        weights.verify()


def test_a_corrupt_quantized_tensor_fails_its_checksum(tmp_path):
    q = ReferenceQuantizer(group_size=32).quantize(gaussian((8, 64)))
    path = save_weights(tmp_path / "m.arrow", {"q": q})
    data = bytearray(path.read_bytes())
    at = bytes(data).find(q.scales.tobytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightFileError, match="checksum"):
        load_weights(path)["q"]


def rewrite_metadata(path, **changes):
    table = ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()  # not mapped: rewritten
    meta = dict(table.schema.metadata)
    meta.update({k.encode(): v.encode() for k, v in changes.items()})
    table = table.replace_schema_metadata(meta)
    with ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)


def test_a_file_from_a_newer_format_version_is_refused(tmp_path):
    path = save_weights(tmp_path / "m.arrow", {"a": np.ones(2)})
    rewrite_metadata(path, **{"aios.format_version": str(FORMAT_VERSION + 1)})
    with pytest.raises(WeightFileError, match="newer than this aios reads.*upgrade aios"):
        load_weights(path)


def test_an_arrow_file_that_is_not_a_weight_file_is_refused(tmp_path):
    path = tmp_path / "other.arrow"
    table = pa.table({"x": [1, 2]})
    with ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(WeightFileError, match="not an aios weight file"):
        load_weights(path)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(WeightFileError, match="cannot open weight file"):
        load_weights(tmp_path / "nope.arrow")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = save_weights(tmp_path / "m.arrow", {"a": np.ones(2)})
    before = path.read_bytes()
    with pytest.raises(WeightFileError, match="dtype object"):
        save_weights(path, {"a": np.ones(2), "bad": np.array([object()])})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.arrow"]


def test_an_inconsistent_quantized_tensor_is_refused_before_writing(tmp_path):
    q = ReferenceQuantizer(group_size=32).quantize(gaussian((4, 64)))
    broken = QuantizedTensor(q.shape, q.dtype, q.bits, q.group_size, q.symmetric,
                             q.data[:, :-1], q.scales, q.zero_points, q.padding)
    with pytest.raises(WeightFileError, match="'q' is not a valid quantized tensor: data"):
        save_weights(tmp_path / "m.arrow", {"q": broken})


def test_an_empty_model_round_trips(tmp_path):
    weights = load_weights(save_weights(tmp_path / "m.arrow", {}, metadata={"k": "v"}))
    assert len(weights) == 0 and weights.metadata == {"k": "v"}


def test_a_file_written_in_several_record_batches_is_read(tmp_path):
    path = save_weights(tmp_path / "m.arrow", {"a": np.arange(3.0), "b": np.ones((2, 2))})
    with pa.memory_map(str(path)) as source:
        table = ipc.open_file(source).read_all()
        with ipc.new_file(str(tmp_path / "batches.arrow"), table.schema) as writer:
            for batch in table.to_batches(max_chunksize=1):
                writer.write_batch(batch)
    weights = load_weights(tmp_path / "batches.arrow")
    np.testing.assert_array_equal(weights["b"], np.ones((2, 2)))
    np.testing.assert_array_equal(weights["a"], np.arange(3.0))
