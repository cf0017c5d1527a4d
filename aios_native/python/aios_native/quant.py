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
        _check_product(q, x, out)
        layout = _layout(q.rows, q.cols, q.group_size, q.bits, q.symmetric)
        _call(_native.matmul, layout, np.ascontiguousarray(x), q.data,
              q.scales.view(np.uint16), _zeros_of(q), out)
        return out

    def matmul_q8(self, quantized: QuantizedTensor, x: np.ndarray, out: np.ndarray, *,
                  isa: str | None = None) -> np.ndarray:
        """``out = x @ W.T`` with `x` quantized to int8 per row and group and integer dot
        products (AVX-512 VNNI, AVX2 or portable, chosen at run time unless `isa` names one);
        the numerics are `aios.quant.activations.matmul_q8`'s."""
        q = quantized.validate()
        _check_product(q, x, out)
        layout = _layout(q.rows, q.cols, q.group_size, q.bits, q.symmetric)
        _call(_native.matmul_q8, layout, np.ascontiguousarray(x), q.data,
              q.scales.view(np.uint16), _zeros_of(q), out, isa)
        return out

    def prepared_q8(self, quantized: QuantizedTensor, *, helper: bool = True) -> PreparedQ8:
        """The int8-activation product of one weight with its checks done once (what a layer
        calls on every forward, where per-call Python work is a visible share at batch 1).
        `helper`: on two cores, share the rows with the kernels' helper thread, which stays
        awake between calls (the faster choice unless other threads spin on the second core
        between calls, as torch's OpenMP workers do under its default wait policy; False
        uses rayon's pool)."""
        return PreparedQ8(quantized.validate(), helper=helper)


class PreparedQ8:
    """A validated weight bound to the native int8-activation kernel: ``run(x, out)``."""

    def __init__(self, q: QuantizedTensor, *, helper: bool = True) -> None:
        self.rows, self.cols = q.rows, q.cols
        self.helper = helper
        self._args = (_layout(q.rows, q.cols, q.group_size, q.bits, q.symmetric), q.data,
                      q.scales.view(np.uint16), _zeros_of(q))

    def run(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """`x` float32 C-contiguous (batch, cols); `out` float32 (batch, rows)."""
        layout, data, scales, zeros = self._args
        _call(_native.matmul_q8, layout, x, data, scales, zeros, out, None, self.helper)
        return out


def _check_product(q: QuantizedTensor, x: np.ndarray, out: np.ndarray) -> None:
    if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != q.cols:
        raise QuantizationError(
            f"inputs must be float32 (batch, {q.cols}), got {x.dtype}{list(x.shape)}")
    if out.shape != (x.shape[0], q.rows) or out.dtype != np.float32:
        raise QuantizationError(
            f"the output must be float32 ({x.shape[0]}, {q.rows}), got "
            f"{out.dtype}{list(out.shape)}")


def dot_isa() -> str:
    """The instruction set of the int8 products on this CPU: "vnni", "avx2" or "portable"."""
    return str(_native.dot_isa())


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
