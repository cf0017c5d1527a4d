"""Model weight files: one Arrow IPC file, one row per tensor, memory-mapped without copies.

Why Arrow IPC: a file is mapped into memory and every tensor becomes a NumPy view of the mapped
pages, so opening a model costs a few page faults instead of reading and unpickling it (which is
what ``torch.load`` does). Each tensor's bytes start on a 64-byte boundary (SIMD loads and the
native kernels want that), each row carries a CRC-32 of its bytes, checked the first time the
tensor is read, the schema metadata carries a CRC-32 of the index (names, shapes, dtypes,
layouts, checksums) and of the user metadata, checked at open, and the format name and version,
so a truncated file, a flipped bit or a file from a newer aios is refused with a clear error.

Opening validates the file's whole Arrow structure (offsets, lengths, UTF-8) and every row's
declared layout against the bytes it has before any buffer is read: Arrow's reader trusts what
it finds, and reading a damaged file unchecked crashed the process (SIGSEGV, SIGABRT, SIGBUS).

Row schema: ``data`` (the tensor's bytes: raw values, or packed low-bit codes), ``name``,
``shape``, ``dtype`` (the dtype of the values, or the original dtype of a quantized tensor), and
for quantized tensors ``quant_type`` (e.g. ``int4-asym``), ``bits``, ``group_size``,
``quant_axis``, ``scales`` (f16 bytes), ``zero_points`` (uint8 bytes, none when symmetric),
``padding`` (columns added to fill the last group); ``checksum`` covers data, scales and zero
points. Files are written to a temporary file, fsynced and renamed, so a reader never sees half
a file. Parquet and safetensors import/export live in `aios.io.weight_formats`.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from aios.errors import QuantizationError, WeightFileError
from aios.io.files import write_atomic
from aios.quant import QuantizedTensor, to_numpy

FORMAT_NAME = "aios-weights"
#: Bumped when a reader of an older version could misread a newer file.
FORMAT_VERSION = 1
#: Byte boundary every tensor's data starts on.
ALIGNMENT = 64

_KEY_FORMAT = b"aios.format"
_KEY_VERSION = b"aios.format_version"
_KEY_METADATA = b"aios.metadata"
_KEY_ALIGN = b"aios.align"
_KEY_INDEX_CRC = b"aios.index_crc32"
#: The columns the index checksum covers: everything but the tensor bytes (which each row's
#: `checksum` covers).
_INDEX_COLUMNS = ("name", "shape", "dtype", "quant_type", "bits", "group_size", "quant_axis",
                  "padding", "checksum")

SCHEMA = pa.schema([
    pa.field("data", pa.large_binary(), nullable=False),
    pa.field("name", pa.string(), nullable=False),
    pa.field("shape", pa.list_(pa.int64()), nullable=False),
    pa.field("dtype", pa.string(), nullable=False),
    pa.field("quant_type", pa.string()),
    pa.field("bits", pa.int8()),
    pa.field("group_size", pa.int32()),
    pa.field("quant_axis", pa.int32()),
    pa.field("scales", pa.large_binary()),
    pa.field("zero_points", pa.large_binary()),
    pa.field("padding", pa.int32()),
    pa.field("checksum", pa.uint32(), nullable=False),
])

#: What a weight file maps a tensor name to.
Tensor = np.ndarray | QuantizedTensor


# -- writing -----------------------------------------------------------------------------------


def save_weights(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Any],
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write `tensors` (NumPy arrays, torch tensors or `QuantizedTensor`s) to an aios weight file.

    `metadata` (string keys and values, e.g. the model's config) is stored with the file and
    comes back as `WeightFile.metadata`.
    """
    path = Path(path)
    rows = [_row(name, tensor) for name, tensor in tensors.items()]
    table = _table(rows)
    meta = {
        _KEY_FORMAT: FORMAT_NAME.encode(),
        _KEY_VERSION: str(FORMAT_VERSION).encode(),
        _KEY_METADATA: json.dumps(dict(metadata or {}), sort_keys=True).encode(),
    }
    index = {name: [r.get(name) for r in rows] for name in _INDEX_COLUMNS}
    meta[_KEY_INDEX_CRC] = f"{_index_crc(index, meta[_KEY_METADATA]):08x}".encode()
    meta[_KEY_ALIGN] = b" " * _alignment_pad(table, meta)
    write_atomic(path, lambda sink: _write_ipc(sink, table.replace_schema_metadata(meta)))
    return path


def _write_ipc(sink: Any, table: pa.Table) -> None:
    if not isinstance(sink, pa.NativeFile):
        sink = pa.PythonFile(sink, mode="w")
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _row(name: str, tensor: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise WeightFileError(f"tensor names must be non-empty strings, got {name!r}")
    if isinstance(tensor, QuantizedTensor):
        try:
            q = tensor.validate()
        except QuantizationError as exc:
            raise WeightFileError(
                f"tensor {name!r} is not a valid quantized tensor: {exc}") from exc
        data = np.ascontiguousarray(q.data).view(np.uint8).reshape(-1)
        scales = np.ascontiguousarray(q.scales, dtype="<f2").tobytes()
        zeros = None if q.zero_points is None else np.ascontiguousarray(q.zero_points).tobytes()
        return {
            "data": data, "name": name, "shape": list(q.shape), "dtype": q.dtype,
            "quant_type": q.quant_type, "bits": q.bits, "group_size": q.group_size,
            "quant_axis": q.quant_axis, "scales": scales, "zero_points": zeros,
            "padding": q.padding, "checksum": _crc(data, scales, zeros),
        }
    array, _ = to_numpy(tensor)
    if array.dtype.kind not in "biuf" or array.dtype.byteorder == ">":
        raise WeightFileError(
            f"tensor {name!r} has dtype {array.dtype}, which a weight file cannot hold; use a "
            f"little-endian bool, integer or float dtype")
    data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    return {"data": data, "name": name, "shape": list(array.shape), "dtype": str(array.dtype),
            "checksum": _crc(data, None, None)}


def _index_crc(columns: Mapping[str, list[Any]], metadata: bytes) -> int:
    """CRC-32 of the tensor index (names, shapes, dtypes, layouts, data checksums) and the
    metadata: what the per-tensor checksums do not cover, so a flipped byte in a name or in the
    model's config is refused too."""
    index = json.dumps([columns[name] for name in _INDEX_COLUMNS], separators=(",", ":"))
    return zlib.crc32(metadata, zlib.crc32(index.encode()))


def _crc(data: np.ndarray, scales: bytes | None, zeros: bytes | None) -> int:
    crc = zlib.crc32(data)
    for extra in (scales, zeros):
        if extra is not None:
            crc = zlib.crc32(extra, crc)
    return crc


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    lengths = [len(r["data"]) for r in rows]
    padded = [-(-n // ALIGNMENT) * ALIGNMENT for n in lengths]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(padded, out=offsets[1:])
    values = np.zeros(int(offsets[-1]), dtype=np.uint8)
    for row, start, n in zip(rows, offsets[:-1], lengths, strict=True):
        values[start:start + n] = row["data"]
    data = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(rows), [None, pa.py_buffer(offsets), pa.py_buffer(values)])
    columns = {"data": data}
    for field in SCHEMA:
        if field.name != "data":
            columns[field.name] = pa.array([r.get(field.name) for r in rows], field.type)
    return pa.table(columns, schema=SCHEMA)


def _alignment_pad(table: pa.Table, meta: dict[bytes, bytes]) -> int:
    """Length of the padding metadata value that puts the data column on a 64-byte boundary.

    Arrow's writer aligns buffers to 8 bytes only. Everything in front of the data values
    (the schema message, the batch header, the data column's offsets) has a size that does not
    depend on the data itself, so a tiny probe file with the same rows finds the padding.
    """
    n = table.num_rows
    if n == 0:
        return 0  # no data buffer to align
    probe_data = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n,
        [None, pa.py_buffer(np.arange(n + 1, dtype=np.int64)), pa.py_buffer(b"\0" * n)])
    probe = pa.Table.from_arrays([probe_data, *table.columns[1:]], schema=SCHEMA)
    for pad in range(0, 2 * ALIGNMENT):
        schema_meta = {**meta, _KEY_ALIGN: b" " * pad}
        sink = pa.BufferOutputStream()
        _write_ipc(sink, probe.replace_schema_metadata(schema_meta))
        buf = sink.getvalue()
        column = ipc.open_file(buf).get_batch(0).column(0)
        if (column.buffers()[2].address - buf.address) % ALIGNMENT == 0:
            return pad
    raise WeightFileError("could not align the weight data to 64 bytes")  # pragma: no cover


# -- reading -----------------------------------------------------------------------------------


class WeightFile(Mapping[str, Tensor]):
    """A memory-mapped weight file: a read-only mapping of tensor name -> array or
    `QuantizedTensor`, whose arrays are views of the mapped file (no copy)."""

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = True) -> None:
        self.path = Path(path)
        self.verify_checksums = verify
        try:
            self._source = pa.memory_map(str(self.path), "r")
        except OSError as exc:
            raise WeightFileError(f"cannot open weight file {self.path}: {exc}") from exc
        table, meta = _read_checked(self.path, self._source)
        self.format_version = int(meta[_KEY_VERSION])
        self.metadata = _metadata(self.path, meta)
        self._columns = {name: table.column(name).to_pylist()
                         for name in SCHEMA.names if name not in ("data", "scales", "zero_points")}
        self._binary = {name: _BinaryColumn(_one_chunk(table.column(name)))
                        for name in ("data", "scales", "zero_points")}
        for i in range(table.num_rows):
            _check_row(self.path, self._columns, self._binary, i)
        _check_index(self.path, self._columns, meta)
        self._index = {name: i for i, name in enumerate(self._columns["name"])}
        if len(self._index) != table.num_rows:
            raise WeightFileError(f"{self.path} names a tensor twice; the file is corrupt, write "
                                  "or copy it again")
        self._verified: set[int] = set()

    def __getitem__(self, name: str) -> Tensor:
        try:
            i = self._index[name]
        except KeyError:
            raise KeyError(f"{self.path} holds no tensor {name!r}") from None
        return self._tensor(i)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def verify(self) -> None:
        """Check every tensor's checksum now (reading the tensors checks them one by one).

        zlib's CRC-32 releases the GIL, so tensors are checked on several threads at once.
        """
        with ThreadPoolExecutor() as pool:
            list(pool.map(self._check, range(len(self))))

    def _tensor(self, i: int) -> Tensor:
        col = self._columns
        name, shape, dtype = col["name"][i], tuple(col["shape"][i]), col["dtype"][i]
        if self.verify_checksums:
            self._check(i)
        data = self._binary["data"].view(i)
        if col["quant_type"][i] is None:
            try:
                np_dtype = np.dtype(dtype)
            except TypeError as exc:
                raise WeightFileError(f"{self.path}: tensor {name!r} has unknown dtype "
                                      f"{dtype!r}") from exc
            count = math.prod(shape)
            if data.size < count * np_dtype.itemsize:
                raise WeightFileError(f"{self.path}: tensor {name!r} holds {data.size} bytes, "
                                      f"fewer than its shape {list(shape)} needs; the file is "
                                      f"corrupt")
            return data[:count * np_dtype.itemsize].view(np_dtype).reshape(shape)
        bits, group, padding = col["bits"][i], col["group_size"][i], col["padding"][i]
        symmetric = col["quant_type"][i].endswith("-sym")
        rows = math.prod(shape[:-1])
        nbytes = rows * (shape[-1] + padding) * bits // 8
        groups = (shape[-1] + padding) // group
        scales = self._binary["scales"].view(i)[:rows * groups * 2].view("<f2")
        zeros = None if symmetric else self._binary["zero_points"].view(i)[:rows * groups]
        try:
            return QuantizedTensor(
                shape, dtype, bits, group, symmetric, data[:nbytes].reshape(rows, -1),
                scales.reshape(rows, groups), None if zeros is None else zeros.reshape(rows, -1),
                padding,
            ).validate()
        except (QuantizationError, ValueError) as exc:
            raise WeightFileError(f"{self.path}: quantized tensor {name!r} is inconsistent: "
                                  f"{exc}") from exc

    def _check(self, i: int) -> None:
        if i in self._verified:
            return
        views = [self._binary[c].view(i) for c in ("data", "scales", "zero_points")]
        sizes = self._exact_sizes(i)
        crc = zlib.crc32(views[0][:sizes[0]])
        for view, size in zip(views[1:], sizes[1:], strict=True):
            if view is not None:
                crc = zlib.crc32(view[:size], crc)
        if crc != self._columns["checksum"][i]:
            raise WeightFileError(
                f"{self.path}: tensor {self._columns['name'][i]!r} fails its checksum (stored "
                f"{self._columns['checksum'][i]:#010x}, computed {crc:#010x}); the file is "
                f"corrupt, write or copy it again")
        self._verified.add(i)

    def _exact_sizes(self, i: int) -> tuple[int, int, int]:
        """Byte sizes of data, scales and zero points without the alignment padding."""
        col = self._columns
        shape = col["shape"][i]
        if col["quant_type"][i] is None:
            try:
                return math.prod(shape) * np.dtype(col["dtype"][i]).itemsize, 0, 0
            except TypeError:
                return 0, 0, 0
        cols = shape[-1] + (col["padding"][i] or 0)
        rows = math.prod(shape[:-1])
        groups = cols // max(col["group_size"][i] or 1, 1)
        return rows * cols * (col["bits"][i] or 8) // 8, rows * groups * 2, rows * groups


#: The most dimensions a tensor may have (NumPy's own limit is 64).
MAX_DIMS = 32


def _read_checked(path: Path, source: pa.NativeFile) -> tuple[pa.Table, Mapping[bytes, bytes]]:
    """The file's table and schema metadata, every Arrow structure checked before any use.

    Arrow's IPC reader trusts the offsets and lengths it finds (reading them unchecked is what
    crashed the process on a flipped byte), so each batch is validated in full (offsets inside
    their buffers, monotone, UTF-8 names) and the schema must be exactly the weight schema
    before a single value is read.
    """
    try:
        if source.size() < 8 or source.read_at(6, 0) != b"ARROW1":
            raise pa.ArrowInvalid("it does not start with the Arrow file magic")
        reader = ipc.open_file(source)
        schema = reader.schema
        _check_format(path, schema.metadata or {})
        if not schema.remove_metadata().equals(SCHEMA, check_metadata=False):
            raise WeightFileError(
                f"{path} is an Arrow file but its columns are not those of an aios weight file "
                "(damaged, or written by another tool); write it again")
        table = reader.read_all()
        for batch in table.to_batches():
            batch.validate(full=True)
    except WeightFileError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise WeightFileError(
            f"{path} is not a complete aios weight file (truncated, corrupt, or not "
            f"an Arrow IPC file): {str(exc).splitlines()[0] if str(exc) else exc!r}; write it "
            "again or copy it completely") from exc
    return table, schema.metadata or {}


def _check_index(path: Path, columns: Mapping[str, list[Any]],
                 meta: Mapping[bytes, bytes]) -> None:
    stored = meta.get(_KEY_INDEX_CRC)
    if stored is None:
        return  # written before the index checksum: its tensors' checksums still apply
    if stored != f"{_index_crc(columns, meta.get(_KEY_METADATA, b'{}')):08x}".encode():
        raise WeightFileError(f"{path}: its tensor index or metadata fails its checksum (a "
                              "name, shape or config value changed on disk); the file is "
                              "corrupt, write or copy it again")


def _metadata(path: Path, meta: Mapping[bytes, bytes]) -> dict[str, str]:
    try:
        value = json.loads(meta.get(_KEY_METADATA, b"{}"))
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WeightFileError(f"{path}: its metadata is not a JSON object; the file is "
                              "corrupt, write or copy it again")
    return value


def _check_row(path: Path, col: dict[str, list[Any]], binary: dict[str, _BinaryColumn],
               i: int) -> None:
    """Refuse a row whose declared layout does not fit the bytes it has (no view reads past)."""
    name = col["name"][i]

    def bad(why: str) -> WeightFileError:
        return WeightFileError(f"{path}: tensor {name!r} {why}; the file is corrupt, write or "
                               "copy it again")

    shape = col["shape"][i]
    if (shape is None or len(shape) > MAX_DIMS
            or any(d is None or d < 0 or d > 2**48 for d in shape)):
        raise bad(f"has an impossible shape {shape!r:.80}")
    try:
        dtype = np.dtype(col["dtype"][i])
    except (TypeError, ValueError):
        raise bad(f"has an unknown dtype {col['dtype'][i]!r:.40}") from None
    if dtype.kind not in "biuf" or dtype.byteorder == ">" or dtype.fields is not None:
        raise bad(f"has dtype {dtype}, which a weight file cannot hold")
    sizes = (binary["data"].size(i), binary["scales"].size(i), binary["zero_points"].size(i))
    quant_type = col["quant_type"][i]
    if quant_type is None:
        if sizes[0] < math.prod(shape) * dtype.itemsize:
            raise bad(f"holds {sizes[0]} bytes, fewer than its shape {list(shape)} needs")
        return
    bits, group, padding = col["bits"][i], col["group_size"][i], col["padding"][i]
    mode = quant_type.rpartition("-")[2]
    if (bits not in (2, 4, 8) or group is None or group < 1 or padding is None
            or not 0 <= padding < group or not shape or mode not in ("sym", "asym")
            or (shape[-1] + padding) % group or (mode == "asym") != (sizes[2] is not None)):
        raise bad(f"has an impossible quantization layout ({quant_type!r:.40}, bits {bits}, "
                  f"group {group}, padding {padding})")
    rows, cols = math.prod(shape[:-1]), shape[-1] + padding
    groups = cols // group
    needs = (rows * cols * bits // 8, rows * groups * 2, rows * groups if mode == "asym" else 0)
    if any((have or 0) < need for have, need in zip(sizes, needs, strict=True)):
        raise bad(f"holds fewer bytes than its layout needs ({list(needs)})")


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: the chunk itself when there is one (no copy, as aios writes)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


class _BinaryColumn:
    """Zero-copy NumPy views of the values of a large_binary Arrow column."""

    def __init__(self, array: pa.LargeBinaryArray) -> None:
        self._array = array
        buffers = array.buffers()
        # Validation guarantees len + 1 offsets; the buffer may be longer (padding, damage).
        self._offsets = np.frombuffer(buffers[1], dtype=np.int64,
                                      count=array.offset + len(array) + 1)[array.offset:]
        self._values = buffers[2]

    def size(self, i: int) -> int | None:
        """The byte length of value `i` (None when null), checked against the values buffer."""
        if not self._array[i].is_valid:
            return None
        return int(self._offsets[i + 1] - self._offsets[i])

    def view(self, i: int) -> np.ndarray | None:
        if not self._array[i].is_valid:
            return None
        start, stop = int(self._offsets[i]), int(self._offsets[i + 1])
        if self._values is None or stop == start:
            return np.empty(0, dtype=np.uint8)
        return np.frombuffer(self._values, dtype=np.uint8, count=stop - start, offset=start)


def _check_format(path: Path, meta: Mapping[bytes, bytes]) -> int:
    if meta.get(_KEY_FORMAT) != FORMAT_NAME.encode():
        raise WeightFileError(f"{path} is an Arrow file but not an aios weight file (no "
                              f"'{FORMAT_NAME}' marker)")
    try:
        version = int(meta.get(_KEY_VERSION, b""))
    except ValueError:
        raise WeightFileError(f"{path} has an unreadable format version "
                              f"{meta.get(_KEY_VERSION)!r}") from None
    if version > FORMAT_VERSION:
        raise WeightFileError(
            f"{path} was written in weight format version {version}, newer than this aios reads "
            f"(up to {FORMAT_VERSION}); upgrade aios to read it")
    return version


def load_weights(path: str | os.PathLike[str], *, verify: bool = True) -> WeightFile:
    """Memory-map an aios weight file; tensors are checked against their checksum when read."""
    return WeightFile(path, verify=verify)

