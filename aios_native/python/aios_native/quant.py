"""The native quantizer: the reference quantizer's policy with Rust kernels.

It subclasses `aios.quant.ReferenceQuantizer` and replaces only the kernels, so it writes the
same bytes (tests check this), and adds the fused dequantize-and-multiply that
`aios.quant.linear.QuantizedLinear` uses at small batch. Every kernel borrows NumPy buffers
(torch tensors through `.numpy()`), writes its output in place and releases the GIL.
"""

from __future__ import annotations

import numpy as np

from aios.errors import QuantizationError
from aios.quant import QuantizedTensor, ReferenceQuantizer
from aios_native import _native


def _layout(rows: int, cols: int, group_size: int, bits: int, symmetric: bool) -> object:
    try:
        return _native.QuantLayout(rows, cols, group_size, bits, symmetric)
    except ValueError as exc:
        raise QuantizationError(str(exc)) from exc


def _zeros_of(q: QuantizedTensor) -> np.ndarray:
    return np.empty(0, dtype=np.uint8) if q.zero_points is None else q.zero_points


def _call(kernel: object, *args: object) -> None:
    try:
        kernel(*args)  # type: ignore[operator]
    except ValueError as exc:
        raise QuantizationError(str(exc)) from exc


class NativeQuantizer(ReferenceQuantizer):
    """Group-wise INT8/INT4/INT2 quantization with Rust kernels (rayon, GIL released)."""

    backend = "native"

    def _quantize_matrix(
        self, matrix: np.ndarray, bits: int, group_size: int, symmetric: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        rows, cols = matrix.shape
        layout = _layout(rows, cols, group_size, bits, symmetric)
        packed = np.empty((rows, layout.row_bytes), dtype=np.uint8)
        scales = np.empty((rows, layout.groups), dtype=np.float16)
        zeros = np.empty((0,) if symmetric else (rows, layout.groups), dtype=np.uint8)
        _call(_native.quantize, layout, np.ascontiguousarray(matrix, dtype=np.float32), packed,
              scales.view(np.uint16), zeros)
        return packed, scales, None if symmetric else zeros

    def _dequantize_into(self, quantized: QuantizedTensor, out: np.ndarray) -> None:
        q = quantized
        layout = _layout(q.rows, q.cols, q.group_size, q.bits, q.symmetric)
        _call(_native.dequantize, layout, q.data, q.scales.view(np.uint16), _zeros_of(q), out)

    def matmul(self, quantized: QuantizedTensor, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = x @ W.T`` fused: `W` is expanded one row at a time, never as a whole."""
        q = quantized.validate()
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != q.cols:
            raise QuantizationError(
                f"inputs must be float32 (batch, {q.cols}), got {x.dtype}{list(x.shape)}")
        if out.shape != (x.shape[0], q.rows) or out.dtype != np.float32:
            raise QuantizationError(
                f"the output must be float32 ({x.shape[0]}, {q.rows}), got "
                f"{out.dtype}{list(out.shape)}")
        layout = _layout(q.rows, q.cols, q.group_size, q.bits, q.symmetric)
        _call(_native.matmul, layout, np.ascontiguousarray(x), q.data,
              q.scales.view(np.uint16), _zeros_of(q), out)
        return out


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Native twin of `aios.quant.pack` (rows of uint8 codes -> packed bytes)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    out = np.empty((codes.shape[0], codes.shape[1] * bits // 8), dtype=np.uint8)
    _call(_native.pack, codes, bits, out)
    return out


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """Native twin of `aios.quant.unpack`."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    out = np.empty((packed.shape[0], packed.shape[1] * 8 // bits), dtype=np.uint8)
    _call(_native.unpack, packed, bits, out)
    return out
