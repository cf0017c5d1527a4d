"""The reference quantizer plugin: which tensors to quantize, how, and over a whole model.

Backends differ only in their two kernels (`_quantize_matrix`, `_dequantize_into`); choosing
what stays 16-bit, validating input, padding and error correction live here once, so the native
backend (a subclass in `aios_native`) produces the very same files.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from tqdm import tqdm

from aios.errors import QuantizationError
from aios.quant import activations, affine
from aios.quant.gptq import gptq_quantize_matrix, hessian
from aios.quant.packing import check_bits
from aios.quant.tensor import QuantizedTensor, check_group_size, padding_for

#: Tensors kept in 16 bits by default: embeddings, norms and the output projection are few
#: parameters and hurt most when quantized. Tensors with fewer than two axes are kept as well.
DEFAULT_KEEP = "*embed*,*norm*,*ln_*,*lm_head*,*output_proj*"

#: What a quantized model maps each tensor name to.
ModelTensors = dict[str, "QuantizedTensor | np.ndarray"]


class ReferenceQuantizer:
    """Group-wise INT8/INT4/INT2 weight quantization with f16 scales, in NumPy."""

    backend = "reference"

    def __init__(
        self,
        bits: int = 4,
        group_size: int = 128,
        symmetric: bool = False,
        keep: str = DEFAULT_KEEP,
        error_correction: bool = False,
        damp: float = 0.01,
    ) -> None:
        self.bits = check_bits(bits)
        self.group_size = check_group_size(group_size)
        self.symmetric = symmetric
        self.keep_patterns = _patterns(keep)
        self.error_correction = error_correction
        self.damp = damp

    def keeps(self, name: str, weights: Any) -> bool:
        """Whether `name` stays 16-bit: fewer than two axes, or it matches a keep pattern."""
        if len(getattr(weights, "shape", ())) < 2:
            return True
        return any(fnmatch.fnmatchcase(name.lower(), p) for p in self.keep_patterns)

    def quantize(
        self, weights: Any, *, name: str = "tensor", calibration: Any = None
    ) -> QuantizedTensor:
        """Quantize one float tensor; with `calibration` inputs (..., cols) and error correction
        on, rounding errors are compensated GPTQ-style (4 and 2 bits; 8 bits rounds plainly)."""
        matrix, shape, dtype = affine.as_float_matrix(weights, name)
        if self.error_correction and self.bits < 8:
            if calibration is None:
                raise QuantizationError(
                    f"error correction needs calibration inputs for {name}; pass them or turn "
                    f"error correction off")
            h = hessian(calibration, shape[-1], name)
            data, scales, zeros = gptq_quantize_matrix(
                matrix, h, self.bits, self.group_size, self.symmetric, damp=self.damp)
            method = "gptq"
        else:
            data, scales, zeros = self._quantize_matrix(
                matrix, self.bits, self.group_size, self.symmetric)
            method = "rtn"
        return QuantizedTensor(shape, dtype, self.bits, self.group_size, self.symmetric, data,
                               scales, zeros, padding_for(shape[-1], self.group_size), method)

    def dequantize(self, quantized: QuantizedTensor, out: np.ndarray | None = None) -> np.ndarray:
        """Float32 values of `quantized`, written into `out` (any float32 C-contiguous array of
        the tensor's size, e.g. a torch tensor's `.numpy()`) when given."""
        quantized.validate()
        if out is None:
            out = np.empty(quantized.shape, dtype=np.float32)
        elif out.dtype != np.float32 or out.size != quantized.rows * quantized.cols \
                or not out.flags.c_contiguous or not out.flags.writeable:
            raise QuantizationError(
                f"the output buffer must be a writable C-contiguous float32 array of "
                f"{quantized.rows * quantized.cols} values, got {out.dtype}{list(out.shape)}")
        self._dequantize_into(quantized, out.reshape(quantized.rows, quantized.cols))
        return out

    def quantize_model(
        self,
        tensors: Mapping[str, Any],
        *,
        calibration: Mapping[str, Any] | None = None,
        progress: bool = False,
    ) -> ModelTensors:
        """Quantize every tensor that is not kept; kept float tensors become float16.

        Non-float tensors (step counters, token ids) are passed through unchanged.
        """
        calibration = calibration or {}
        result: ModelTensors = {}
        for name, weights in tqdm(tensors.items(), desc=f"quantizing to {self.bits} bits",
                                  unit="tensor", disable=not progress):
            array, _ = affine.to_numpy(weights)
            if not np.issubdtype(array.dtype, np.floating):
                result[name] = np.ascontiguousarray(array)
            elif self.keeps(name, array):
                result[name] = np.ascontiguousarray(array, dtype=np.float16)
            else:
                result[name] = self.quantize(weights, name=name, calibration=calibration.get(name))
        return result

    def matmul(self, quantized: QuantizedTensor, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = x @ W.T`` for float32 `x` (batch, cols) and the quantized 2-D weight `W`.

        The reference dequantizes `W` first; a native backend fuses the two steps.
        """
        weights = self.dequantize(quantized).reshape(quantized.rows, quantized.cols)
        np.matmul(x, weights.T, out=out)
        return out

    def matmul_q8(self, quantized: QuantizedTensor, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = x @ W.T`` with `x` quantized to int8 per row and group and integer group sums
        (`aios.quant.activations` defines the numerics; a native backend runs them in SIMD)."""
        return self.prepared_q8(quantized).run(x, out)

    def prepared_q8(self, quantized: QuantizedTensor, *, helper: bool = True) -> Any:
        """`matmul_q8` of one weight with its checks done once: an object with ``run(x, out)``
        (what `QuantizedLinear` calls on every forward). `helper`: how a parallel backend
        shares two cores (see `aios_native`'s kernels); the reference runs on one thread."""
        return activations.ReferenceProduct(quantized)

    # -- kernels: the only part a faster backend replaces -------------------------------------

    def _quantize_matrix(
        self, matrix: np.ndarray, bits: int, group_size: int, symmetric: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return affine.quantize_matrix(matrix, bits, group_size, symmetric)

    def _dequantize_into(self, quantized: QuantizedTensor, out: np.ndarray) -> None:
        affine.dequantize_into(quantized, out)


def _patterns(keep: str | Iterable[str]) -> tuple[str, ...]:
    items = keep.split(",") if isinstance(keep, str) else list(keep)
    return tuple(p.strip().lower() for p in items if p.strip())
