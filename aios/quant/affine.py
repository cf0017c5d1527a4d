"""Group-wise affine quantization in NumPy: the reference every other backend must match.

Asymmetric (per group): the range is widened to include 0 so that 0 is exact,
``scale = (max - min) / (2**bits - 1)`` rounded up to f16, ``zero = round(-min / scale)``,
``code = clamp(round(x / scale) + zero, 0, 2**bits - 1)``.
Symmetric: ``scale = max|x| / (2**(bits-1) - 1)``, ``code = clamp(round(x / scale),
-2**(bits-1), 2**(bits-1) - 1) + 2**(bits-1)``. Rounding is half-to-even and all arithmetic is
float32 with the f16-rounded scale, which is what makes a native kernel able to produce the
very same bytes. A scale of 0 (an all-zero group) is stored as 1.
Dequantization is ``(code - zero) * scale`` in float32.
"""

from __future__ import annotations

import numpy as np

from aios.errors import QuantizationError
from aios.quant.packing import check_bits, pack, unpack
from aios.quant.tensor import QuantizedTensor, check_group_size, padding_for

#: The largest finite float16; a scale above it cannot be stored.
F16_MAX = float(np.finfo(np.float16).max)


def as_float_matrix(
    weights: object, name: str = "tensor"
) -> tuple[np.ndarray, tuple[int, ...], str]:
    """Validate a float tensor and view it as a float32 (rows, cols) matrix.

    Returns the matrix, the original shape and dtype name. Raises `QuantizationError` for
    non-float dtypes, scalars, empty tensors and NaN/inf values, naming the tensor.
    """
    array, dtype = to_numpy(weights)
    if not np.issubdtype(array.dtype, np.floating):
        raise QuantizationError(
            f"{name} has dtype {dtype}; only floating-point weights can be quantized. Keep it "
            f"unquantized (add it to the quantizer's keep patterns) or cast it to float first")
    if array.ndim == 0 or array.size == 0:
        raise QuantizationError(
            f"{name} has shape {list(array.shape)}; quantization needs at least one "
            f"non-empty axis")
    matrix = np.ascontiguousarray(array.reshape(-1, array.shape[-1]), dtype=np.float32)
    finite = np.isfinite(matrix)
    if not finite.all():
        bad = int(matrix.size - np.count_nonzero(finite))
        first = np.unravel_index(int(np.argmin(finite.reshape(-1))), array.shape)
        raise QuantizationError(
            f"{name} holds {bad} NaN or infinite value(s), the first at index "
            f"{tuple(int(i) for i in first)}; fix the weights (a diverged training run?) before "
            f"quantizing")
    return matrix, tuple(int(d) for d in array.shape), dtype


def to_numpy(weights: object) -> tuple[np.ndarray, str]:
    """A NumPy view of a NumPy array or a torch tensor (bfloat16 widened), with its dtype name."""
    if type(weights).__module__.startswith("torch"):
        import torch

        assert isinstance(weights, torch.Tensor)
        dtype = str(weights.dtype).removeprefix("torch.")
        tensor = weights.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return tensor.numpy(), dtype
    array = np.asarray(weights)
    return array, str(array.dtype)


def group_params(
    groups: np.ndarray, bits: int, symmetric: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scales (f16), their float32 values and zero points (float32) of (..., group) values."""
    if symmetric:
        qpos = np.float32((1 << (bits - 1)) - 1)
        scale = np.abs(groups).max(axis=-1) / qpos
    else:
        lo = np.minimum(groups.min(axis=-1), np.float32(0))
        hi = np.maximum(groups.max(axis=-1), np.float32(0))
        scale = (hi - lo) / np.float32((1 << bits) - 1)
    if not np.all(scale <= F16_MAX):
        raise QuantizationError(
            f"a group's range needs a scale above {F16_MAX:g}, the float16 maximum; weights "
            f"this large cannot be quantized with f16 scales (rescale the layer first)")
    scales16 = np.asarray(scale.astype(np.float16))
    # Round the scale up, never down: a scale below the range's would clip the group's extreme
    # values by whole steps (it matters for small groups, whose f16 scales are subnormal).
    low = scales16.astype(np.float32) < scale
    scales16[low] = np.nextafter(scales16[low], np.float16(np.inf))
    scales16[scales16 == 0] = np.float16(1)
    s = scales16.astype(np.float32)
    if symmetric:
        zero = np.full(s.shape, np.float32(1 << (bits - 1)), dtype=np.float32)
    else:
        zero = np.clip(np.rint(-lo / s), 0, (1 << bits) - 1).astype(np.float32)
    return scales16, s, zero


def quantize_values(x: np.ndarray, s: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    """Codes of values `x` with float32 scale `s` and zero `zero` (broadcasting), as uint8."""
    q = np.rint(x / s) + zero
    return np.clip(q, 0, (1 << bits) - 1).astype(np.uint8)


def quantize_matrix(
    matrix: np.ndarray, bits: int, group_size: int, symmetric: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Reference kernel: float32 (rows, cols) -> packed codes, f16 scales, zero points."""
    rows, cols = matrix.shape
    pad = padding_for(cols, group_size)
    padded = np.pad(matrix, ((0, 0), (0, pad)), mode="edge") if pad else matrix
    groups = padded.reshape(rows, -1, group_size)
    scales16, s, zero = group_params(groups, bits, symmetric)
    codes = quantize_values(groups, s[..., None], zero[..., None], bits)
    packed = pack(codes.reshape(rows, -1), bits)
    return packed, scales16, None if symmetric else zero.astype(np.uint8)


def dequantize_into(q: QuantizedTensor, out: np.ndarray) -> np.ndarray:
    """Reference kernel: write the float32 values of `q` into `out` (rows, cols) and return it."""
    codes = unpack(q.data, q.bits).reshape(q.rows, q.groups, q.group_size).astype(np.float32)
    zero = q.zero_point_array().astype(np.float32)[..., None]
    values = (codes - zero) * q.scales.astype(np.float32)[..., None]
    out[...] = values.reshape(q.rows, q.padded_cols)[:, : q.cols]
    return out


def quantize(
    weights: object,
    *,
    bits: int = 4,
    group_size: int = 128,
    symmetric: bool = False,
    name: str = "tensor",
) -> QuantizedTensor:
    """Quantize one float tensor group-wise along its last axis with the reference kernel."""
    check_bits(bits)
    check_group_size(group_size)
    matrix, shape, dtype = as_float_matrix(weights, name)
    data, scales, zeros = quantize_matrix(matrix, bits, group_size, symmetric)
    return QuantizedTensor(shape, dtype, bits, group_size, symmetric, data, scales, zeros,
                           padding_for(shape[-1], group_size))


def dequantize(q: QuantizedTensor) -> np.ndarray:
    """Float32 values of a quantized tensor, in its original shape."""
    out = np.empty((q.rows, q.cols), dtype=np.float32)
    return dequantize_into(q, out).reshape(q.shape)
