"""Structural validation of a GGUF file before any library touches its buffers.

Why our own reader: GGUF readers map the file and trust its counts and offsets, so a damaged
file (a truncated download, a flipped length) ends in an IndexError, a huge allocation or a
crash deep inside NumPy. This walks the header with bounds checks on every read (magic,
version, key/value pairs, tensor infos), then checks that every tensor's type is one aios can
dequantize and that its bytes lie inside the file. Only then is the file handed on.

Layout (GGUF v2/v3, little-endian): magic ``GGUF``, version u32, tensor count u64, key/value
count u64; key/value pairs (key string, type u32, value); tensor infos (name string, n_dims u32,
dims u64 each, type u32, offset u64); padding to ``general.alignment`` (default 32); the data.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aios.models.families.errors import CheckpointError

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
#: Strings and arrays longer than this are taken as damage, not data (the largest real
#: vocabularies have a few hundred thousand entries).
_MAX_ITEMS = 1 << 26
_MAX_DIMS = 4


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  #: GGUF order: the fastest-varying dimension first
    type_name: str
    offset: int  #: absolute, in the file
    nbytes: int


@dataclass(frozen=True)
class GGUFSummary:
    """What a valid GGUF holds: its metadata (arrays summarised by length) and tensors."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensor, ...]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))


def supported_types() -> dict[int, tuple[str, int, int]]:
    """GGML type id -> (name, elements per block, bytes per block) for every type the `gguf`
    package can dequantize (what `transformers` uses to load a GGUF)."""
    import gguf
    from gguf import quants

    types = {}
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        plain = qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
        if plain or qtype in quants._type_traits:
            types[int(qtype)] = (qtype.name, block, size)
    return types


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: damaged GGUF file: {what} (at byte {self.pos}); "
                               "download or export it again")

    def take(self, fmt: str, what: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise self.fail(f"the file ends inside {what}")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self, what: str) -> str:
        length = self.take("<Q", what)
        if length > _MAX_ITEMS:
            raise self.fail(f"{what} claims {length} bytes")
        if self.pos + length > len(self.data):
            raise self.fail(f"the file ends inside {what} ({length} bytes)")
        raw = self.data[self.pos:self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def value(self, kind: int, what: str) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind], what)
        if kind == _STRING:
            return self.string(what)
        if kind == _ARRAY:
            item = self.take("<I", what)
            count = self.take("<Q", what)
            if count > _MAX_ITEMS or item == _ARRAY:
                raise self.fail(f"{what} is an array of {count} items of type {item}")
            if item in _SCALARS:  # skip without decoding: vocabularies are large
                size = struct.calcsize(_SCALARS[item]) * count
                if self.pos + size > len(self.data):
                    raise self.fail(f"the file ends inside {what}")
                self.pos += size
            elif item == _STRING:
                for _ in range(count):
                    self.string(what)
            else:
                raise self.fail(f"{what} has unknown item type {item}")
            return f"<array of {count}>"
        raise self.fail(f"{what} has unknown value type {kind}")


def check_gguf(path: str | Path) -> GGUFSummary:
    """Validate `path` as a GGUF file aios can load; raise a `CheckpointError` naming the first
    problem (damage, an unsupported version or tensor type), else summarise it."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a GGUF file")
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise CheckpointError(f"{path} is not a GGUF file ({size} bytes); give a .gguf "
                                      "file from llama.cpp's converters")
            # a memory map: the walk reads only the header's pages, not the weights
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _walk(path, data, size)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist: give the path of a .gguf file") from None


def _walk(path: Path, data: Any, size: int) -> GGUFSummary:
    cur = _Cursor(data, path)
    if data[:4] != MAGIC:
        raise CheckpointError(f"{path} is not a GGUF file (it does not start with 'GGUF'); give "
                              "a .gguf file from llama.cpp's converters")
    cur.pos = 4
    version = cur.take("<I", "the version")
    if version not in (2, 3):
        raise CheckpointError(f"{path}: GGUF version {version} is not supported (2 and 3 are); "
                              "re-export the model with a current llama.cpp")
    n_tensors = cur.take("<Q", "the tensor count")
    n_kv = cur.take("<Q", "the metadata count")
    if n_tensors > _MAX_ITEMS or n_kv > _MAX_ITEMS:
        raise cur.fail(f"it claims {n_tensors} tensors and {n_kv} metadata entries")
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}")
        metadata[key] = cur.value(cur.take("<I", f"the type of {key!r}"), f"metadata {key!r}")
    infos = []
    for i in range(n_tensors):
        name = cur.string(f"the name of tensor #{i}")
        n_dims = cur.take("<I", f"the rank of tensor {name!r}")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise cur.fail(f"tensor {name!r} claims {n_dims} dimensions")
        shape = tuple(cur.take("<Q", f"the shape of tensor {name!r}") for _ in range(n_dims))
        kind = cur.take("<I", f"the type of tensor {name!r}")
        offset = cur.take("<Q", f"the offset of tensor {name!r}")
        infos.append((name, shape, kind, offset))
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
        raise cur.fail(f"general.alignment is {alignment!r}, not a power of two")
    start = -(-cur.pos // alignment) * alignment
    return GGUFSummary(path, version, metadata,
                       tuple(_tensor(cur, info, start, size) for info in infos))


def _tensor(cur: _Cursor, info: tuple[str, tuple[int, ...], int, int], start: int,
            size: int) -> GGUFTensor:
    name, shape, kind, offset = info
    types = supported_types()
    if kind not in types:
        import gguf

        known = {int(t): t.name for t in gguf.GGMLQuantizationType}
        label = known.get(kind, f"unknown type {kind}")
        names = ", ".join(sorted(n for n, _, _ in types.values()))[:200]
        raise CheckpointError(
            f"{cur.path}: tensor {name!r} is stored as {label}, which aios cannot dequantize; "
            f"re-quantize the model with llama.cpp to one of: {names}")
    type_name, block, block_bytes = types[kind]
    count = math.prod(shape)
    if shape[0] % block:
        raise cur.fail(f"tensor {name!r} has rows of {shape[0]} values, not a multiple of "
                       f"{type_name}'s block of {block}")
    nbytes = count // block * block_bytes
    if start + offset + nbytes > size:
        raise cur.fail(f"tensor {name!r} ({type_name}, shape {list(shape)}) ends at byte "
                       f"{start + offset + nbytes}, past the end of the file ({size} bytes)")
    return GGUFTensor(name, shape, type_name, start + offset, nbytes)


__all__ = ["GGUFSummary", "GGUFTensor", "check_gguf", "supported_types"]
