"""The native storage backend: the shared on-disk format, searched by the Rust kernels.

Persistence (write-ahead log, Arrow IPC segments, manifest) is `aios.memory`'s, so a store
written by one backend opens with the other; this module only swaps the search kernel for the
fused SIMD scan of `aios_native._native` (rayon threads, GIL released, no copies: the kernel
reads the memory-mapped segment through NumPy's buffer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aios.memory import MemoryStore, Retention
from aios_native import _native

_SCANS = {
    np.dtype(np.float32): _native.top_k_f32,
    np.dtype(np.float16): _native.top_k_f16,
    np.dtype(np.int8): _native.top_k_i8,
}


class NativeKernel:
    """Fused scoring + top-k in Rust (simsimd per row, a heap per query, rayon across rows)."""

    name = "native"

    def top_k(self, matrix, queries, k, metric, *, mask=None, scale=None, bias=None,
              threshold=None):
        scan = _SCANS[matrix.dtype]
        if matrix.dtype == np.float16:
            matrix, queries = matrix.view(np.uint16), queries.astype(np.float16).view(np.uint16)
        else:
            queries = queries.astype(matrix.dtype, copy=False)
        return scan(
            np.ascontiguousarray(matrix), np.ascontiguousarray(queries), int(k), metric,
            mask=None if mask is None else np.ascontiguousarray(mask, dtype=bool),
            scale=None if scale is None else np.ascontiguousarray(scale, dtype=np.float32),
            bias=None if bias is None else np.ascontiguousarray(bias, dtype=np.float32),
            threshold=threshold,
        )

    def quantize_i8(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes = np.empty(matrix.shape, np.int8)
        scales = np.empty(len(matrix), np.float32)
        _native.quantize_i8(np.ascontiguousarray(matrix, dtype=np.float32), codes, scales)
        return codes, scales


def native_store(path: str, dim: int | None = None, read_only: bool = False,
                 flush_rows: int = 100_000,
                 retention: Retention | Mapping[str, Any] | None = None,
                 copies: str | None = None) -> MemoryStore:
    """Native storage: Rust SIMD search (fused top-k, int8/f16 scans) over the shared format."""
    return MemoryStore(path, dim, read_only=read_only, flush_rows=flush_rows,
                       retention=retention, copies=copies, kernel=NativeKernel(),
                       backend="native")
