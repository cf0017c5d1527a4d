"""Moving weights between aios and other tools: Parquet, safetensors and torch checkpoints.

The aios weight file (`aios.io.weights`) is what aios runs from; these converters let the same
tensors be inspected with Parquet tools (one row per tensor, the original ArrowQuant columns:
layer_name, shape, dtype, data, num_params, quant_type, scales, zero_points, quant_axis,
group_size) and exchanged with the PyTorch ecosystem through safetensors. A quantized tensor
survives both round trips bit for bit: its packed codes are the data, its scales and zero
points are columns (Parquet) or companion tensors ``NAME:scales`` / ``NAME:zero_points`` with
the layout in the header's metadata (safetensors).
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aios.errors import QuantizationError, WeightFileError
from aios.io.files import write_atomic
from aios.io.weights import FORMAT_VERSION, load_weights
from aios.quant import QuantizedTensor, dequantize, padding_for, to_numpy

PARQUET_SCHEMA = pa.schema([
    pa.field("layer_name", pa.string(), nullable=False),
    pa.field("shape", pa.list_(pa.int64()), nullable=False),
    pa.field("dtype", pa.string(), nullable=False),
    pa.field("data", pa.large_binary(), nullable=False),
    pa.field("num_params", pa.int64(), nullable=False),
    pa.field("quant_type", pa.string(), nullable=False),
    pa.field("scales", pa.list_(pa.float32())),
    pa.field("zero_points", pa.list_(pa.int32())),
    pa.field("quant_axis", pa.int32()),
    pa.field("group_size", pa.int32()),
])
_PARQUET_VERSION_KEY = b"aios.format_version"
_SAFETENSORS_QUANT_KEY = "aios.quant"
#: Suffixes of the companion tensors of a quantized tensor in a safetensors file.
SCALES_SUFFIX, ZEROS_SUFFIX = ":scales", ":zero_points"

Tensors = dict[str, "np.ndarray | QuantizedTensor"]


def _plain(name: str, tensor: Any) -> np.ndarray:
    array, _ = to_numpy(tensor)
    if array.dtype.kind not in "biuf":
        raise WeightFileError(f"tensor {name!r} has dtype {array.dtype}, which cannot be exported")
    return np.ascontiguousarray(array)


# -- Parquet -----------------------------------------------------------------------------------


def export_parquet(tensors: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write tensors to a Parquet file with the ArrowQuant columns (one row per tensor)."""
    rows: dict[str, list[Any]] = {f.name: [] for f in PARQUET_SCHEMA}
    for name, tensor in tensors.items():
        if isinstance(tensor, QuantizedTensor):
            q = tensor.validate()
            values = {"shape": list(q.shape), "dtype": q.dtype, "data": q.data.tobytes(),
                      "num_params": math.prod(q.shape), "quant_type": q.quant_type,
                      "scales": q.scales.astype(np.float32).reshape(-1),
                      "zero_points": None if q.zero_points is None
                      else q.zero_points.astype(np.int32).reshape(-1),
                      "quant_axis": q.quant_axis, "group_size": q.group_size}
        else:
            array = _plain(name, tensor)
            values = {"shape": list(array.shape), "dtype": str(array.dtype),
                      "data": array.tobytes(), "num_params": array.size, "quant_type": "none",
                      "scales": None, "zero_points": None, "quant_axis": None,
                      "group_size": None}
        rows["layer_name"].append(name)
        for key, value in values.items():
            rows[key].append(value)
    table = pa.table(rows, schema=PARQUET_SCHEMA).replace_schema_metadata(
        {_PARQUET_VERSION_KEY: str(FORMAT_VERSION).encode()})
    path = Path(path)
    write_atomic(path, lambda f: pq.write_table(table, pa.PythonFile(f, mode="w")))
    return path


def import_parquet(path: str | os.PathLike[str]) -> Tensors:
    """Read tensors from a Parquet file written by `export_parquet` (or any tool using the
    same columns)."""
    try:
        table = pq.read_table(path)
        for batch in table.to_batches():
            batch.validate(full=True)  # offsets and UTF-8 checked before any value is read
        version = int((table.schema.metadata or {}).get(_PARQUET_VERSION_KEY, b"1"))
        names = table.column_names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise WeightFileError(f"cannot read Parquet weights {path} (damaged, or not Parquet "
                              f"weights): {_first_line(exc)}") from exc
    if version > FORMAT_VERSION:
        raise WeightFileError(f"{path} uses weight format version {version}, newer than this "
                              f"aios reads (up to {FORMAT_VERSION}); upgrade aios")
    missing = [n for n in PARQUET_SCHEMA.names if n not in names]
    if missing:
        raise WeightFileError(f"{path} lacks the columns {missing}")
    result: Tensors = {}
    if not table.schema.remove_metadata().equals(PARQUET_SCHEMA):
        raise WeightFileError(f"{path}: its columns do not have the ArrowQuant types "
                              f"({PARQUET_SCHEMA.names}); the file is damaged or not weights")
    for row in table.to_pylist():
        name, shape, data = row["layer_name"], tuple(row["shape"]), row["data"]
        try:
            if row["quant_type"] in (None, "none"):
                dtype = np.dtype(row["dtype"])
                if dtype.kind not in "biuf" or dtype.fields is not None:
                    raise ValueError(f"dtype {dtype} is not a tensor dtype")
                result[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
                continue
            bits, symmetric = _parse_quant_type(row["quant_type"])
            group = int(row["group_size"])
            padding = padding_for(shape[-1], group)
            rows = math.prod(shape[:-1])
            zeros = row["zero_points"]
            result[name] = QuantizedTensor(
                shape, row["dtype"], bits, group, symmetric,
                np.frombuffer(data, dtype=np.uint8).reshape(rows, -1),
                np.asarray(row["scales"], dtype=np.float16).reshape(rows, -1),
                None if zeros is None else np.asarray(zeros, dtype=np.uint8).reshape(rows, -1),
                padding).validate()
        except (ValueError, TypeError, OverflowError, QuantizationError) as exc:
            raise WeightFileError(f"{path}: tensor {name!r} is malformed: {exc}") from exc
    return result


def _parse_quant_type(quant_type: str) -> tuple[int, bool]:
    kind, _, mode = quant_type.partition("-")
    if not kind.startswith("int") or mode not in ("sym", "asym"):
        raise QuantizationError(f"unknown quant_type {quant_type!r}; expected e.g. 'int4-asym'")
    return int(kind[3:]), mode == "sym"


# -- safetensors -------------------------------------------------------------------------------


def export_safetensors(
    tensors: Mapping[str, Any], path: str | os.PathLike[str], *, dequantized: bool = False
) -> Path:
    """Write tensors to safetensors. Quantized tensors keep their packed codes (plus companion
    scale and zero-point tensors) unless `dequantized`, which writes float32 for tools that
    know nothing of aios."""
    from safetensors.numpy import save

    arrays: dict[str, np.ndarray] = {}
    layouts: dict[str, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if isinstance(tensor, QuantizedTensor) and dequantized:
            arrays[name] = dequantize(tensor)
        elif isinstance(tensor, QuantizedTensor):
            q = tensor.validate()
            arrays[name] = np.ascontiguousarray(q.data)
            arrays[name + SCALES_SUFFIX] = np.ascontiguousarray(q.scales)
            if q.zero_points is not None:
                arrays[name + ZEROS_SUFFIX] = np.ascontiguousarray(q.zero_points)
            layouts[name] = {"shape": list(q.shape), "dtype": q.dtype, "bits": q.bits,
                             "group_size": q.group_size, "symmetric": q.symmetric,
                             "padding": q.padding, "method": q.method}
        else:
            arrays[name] = _plain(name, tensor)
    metadata = {"aios.format_version": str(FORMAT_VERSION),
                _SAFETENSORS_QUANT_KEY: json.dumps(layouts, sort_keys=True)}
    payload = save(arrays, metadata=metadata)
    path = Path(path)
    write_atomic(path, lambda f: f.write(payload))
    return path


def import_safetensors(path: str | os.PathLike[str]) -> Tensors:
    """Read a safetensors file; tensors exported quantized by aios come back quantized."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            arrays = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise WeightFileError(f"cannot read safetensors file {path}: {exc}") from exc
    try:
        layouts = json.loads(metadata.get(_SAFETENSORS_QUANT_KEY, "{}"))
    except (ValueError, RecursionError):
        layouts = None
    if not isinstance(layouts, dict) or not all(isinstance(v, dict) for v in layouts.values()):
        raise WeightFileError(f"{path}: its {_SAFETENSORS_QUANT_KEY!r} metadata is not a JSON "
                              "object of layouts; the file is damaged, export it again")
    result: Tensors = {}
    for name, layout in layouts.items():
        try:
            result[name] = QuantizedTensor(
                tuple(layout["shape"]), layout["dtype"], layout["bits"], layout["group_size"],
                layout["symmetric"], arrays.pop(name), arrays.pop(name + SCALES_SUFFIX),
                arrays.pop(name + ZEROS_SUFFIX, None), layout["padding"],
                layout.get("method", "rtn")).validate()
        except (KeyError, TypeError, ValueError, OverflowError, QuantizationError) as exc:
            raise WeightFileError(f"{path}: quantized tensor {name!r} is incomplete or "
                                  f"malformed: {exc}") from exc
    result.update(arrays)
    return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- any supported file ------------------------------------------------------------------------


def read_model(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The tensors of a model file: an aios weight file, safetensors, Parquet weights or a torch
    checkpoint (a state_dict saved with ``torch.save``), recognised by content."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise WeightFileError(f"cannot read model file {path}: {exc}") from exc
    if head.startswith(b"ARROW1"):
        return load_weights(path)
    if head.startswith(b"PAR1"):
        return import_parquet(path)
    if path.suffix == ".safetensors":
        return import_safetensors(path)
    if head.startswith(b"PK") or path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return _read_torch(path)
    raise WeightFileError(
        f"{path} is not a model file aios reads; give an aios weight file (.arrow), "
        f".safetensors, Parquet weights or a torch state_dict (.pt)")


class NotAStateDictError(WeightFileError):
    """A torch file holds something other than a state_dict: the user gave the wrong file."""

    exit_code = 2


def _read_torch(path: Path) -> Mapping[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # a pickled module or other object: a user mistake
        raise NotAStateDictError(
            f"{path} holds pickled Python objects (e.g. a whole module), not a state_dict; "
            "save the weights with torch.save(model.state_dict(), path)") from exc
    except Exception as exc:
        raise WeightFileError(f"cannot load torch checkpoint {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NotAStateDictError(f"{path} does not hold a state_dict (a dict of tensors); save "
                              f"one with torch.save(model.state_dict(), path)")
    return state
