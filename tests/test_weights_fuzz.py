"""Every damaged weight file is a clear error naming the file, never a crash.

Each byte of a small model file (plain and quantized tensors, metadata) is damaged in turn and
loaded in a child process (`tests/fuzzing.py`), so a SIGSEGV/SIGABRT/SIGBUS is counted instead
of ending the test run. The regions of the file (header, schema, record batch metadata and
offsets, tensor data, footer) are all covered, and each must produce errors: a fuzz that never
reaches a region proves nothing about it.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from fuzzing import fuzz, variants_flipping

from aios.io.weight_formats import export_parquet, export_safetensors
from aios.io.weights import save_weights
from aios.quant import ReferenceQuantizer


def tensors():
    rng = np.random.default_rng(0)
    quantized = ReferenceQuantizer(bits=4, group_size=32).quantize(
        rng.normal(size=(4, 64)).astype(np.float32), name="q")
    return {"a": rng.normal(size=(3, 5)).astype(np.float32),
            "b.x": np.arange(7, dtype=np.int64), "q": quantized}


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory) -> Path:
    return save_weights(tmp_path_factory.mktemp("w") / "model.arrow", tensors(),
                        metadata={"config": '{"dim": 8}'})


def regions(path: Path) -> dict[str, range]:
    """Byte ranges of the IPC file's parts, found from the buffers Arrow reads in place."""
    raw = path.read_bytes()
    buffer = pa.py_buffer(raw)
    batch = ipc.open_file(buffer).get_batch(0)
    values = batch.column(0).buffers()[2]
    data_start = values.address - buffer.address
    footer_len = int.from_bytes(raw[-10:-6], "little")
    footer_start = len(raw) - 10 - footer_len
    first_buffer = min(b.address - buffer.address for column in batch.columns
                       for b in column.buffers() if b is not None and b.size)
    return {"header": range(0, 8), "schema and batch metadata": range(8, first_buffer),
            "offsets, names, shapes and layouts": range(first_buffer, data_start),
            "tensor data": range(data_start, data_start + values.size),
            "scales, zero points and checksums": range(data_start + values.size, footer_start),
            "footer": range(footer_start, len(raw))}


@pytest.fixture(scope="module")
def flips(weight_file):
    """Every byte of the file flipped (^0xFF) in turn, loaded in child processes."""
    variants = variants_flipping(range(weight_file.stat().st_size), (0xFF,))
    return variants, fuzz(weight_file, "aios.weights:load_weights", variants,
                          error="aios.errors.WeightFileError")


def test_every_flipped_byte_of_a_weight_file_is_an_error_naming_it_or_harmless(flips):
    variants, report = flips
    assert report.crashes == 0, report.failures[:10]
    assert report.failures == []  # no other exception, no error without the file's name
    assert report.outcomes["error"] > len(variants) // 3


@pytest.mark.parametrize("region", ["header", "schema and batch metadata",
                                    "offsets, names, shapes and layouts", "tensor data",
                                    "scales, zero points and checksums", "footer"])
def test_damage_in_each_region_of_a_weight_file_is_refused(weight_file, flips, region):
    variants, report = flips
    part = regions(weight_file)[region]
    outcomes = [report.by_variant[i] for i, (_, at, _) in enumerate(variants) if at in part]
    assert outcomes and "error" in outcomes, f"no damage in the {region} was noticed"
    assert set(outcomes) <= {"error", "loaded"}


def test_a_weight_file_truncated_anywhere_is_refused(weight_file):
    size = weight_file.stat().st_size
    report = fuzz(weight_file, "aios.weights:load_weights",
                  [("truncate", at, 0) for at in range(0, size, 7)],
                  error="aios.errors.WeightFileError")
    assert report.crashes == 0 and report.failures == []
    assert report.outcomes == {"error": len(range(0, size, 7))}


@pytest.mark.parametrize("export", [export_safetensors, export_parquet])
def test_every_flipped_byte_of_an_imported_file_is_an_error_naming_it_or_harmless(
        tmp_path, export):
    path = export(tensors(), tmp_path / ("model.safetensors" if export is export_safetensors
                                          else "model.parquet"))
    report = fuzz(path, "aios.weight_formats:read_model",
                  variants_flipping(range(path.stat().st_size), (0xFF,)),
                  error="aios.errors.WeightFileError")
    assert report.crashes == 0, report.failures[:10]
    assert report.failures == []
    assert report.outcomes["error"] > 0


def test_no_flipped_byte_changes_what_a_weight_file_loads_without_an_error(weight_file, tmp_path):
    """Names and the model's metadata are covered by the index checksum, tensor bytes by their
    own: a flip is refused or changes nothing that loads (padding, alignment filler)."""
    from aios.errors import WeightFileError
    from aios.io.weights import load_weights

    def snapshot(path):
        weights = load_weights(path)
        weights.verify()
        parts = {"metadata": weights.metadata}
        for name in weights:
            tensor = weights[name]
            arrays = [tensor] if isinstance(tensor, np.ndarray) else \
                [tensor.data, tensor.scales, tensor.zero_points]
            parts[name] = [(a.dtype.str, a.shape, a.tobytes()) for a in arrays if a is not None]
            parts[name].append(getattr(tensor, "shape", None))
        return parts

    reference = snapshot(weight_file)
    raw = weight_file.read_bytes()
    target = tmp_path / "flipped.arrow"
    silent = []
    for at in range(len(raw)):
        data = bytearray(raw)
        data[at] ^= 0x01
        target.write_bytes(bytes(data))
        try:
            loaded = snapshot(target)
        except WeightFileError:
            continue
        if loaded != reference:
            silent.append(at)
    assert silent == []
