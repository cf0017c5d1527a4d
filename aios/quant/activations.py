"""Products with int8 activations: the NumPy reference of the native integer kernels.

A quantized linear layer can quantize its *inputs* too, per row and per weight group, to
symmetric int8 (``x ≈ s_x q`` with ``s_x = max|x_g| / 127``). Each group's products of weight
codes and input codes are then integers, summed exactly, and the scales and zero point are
applied once per group::

    y[b, r] = Σ_g s_w[r, g] s_x[b, g] (Σ_j c[r, g, j] q[b, g, j] - z[r, g] Σ_j q[b, g, j])

This is what lets CPUs use their byte dot-product instructions (AVX-512 VNNI, AVX2); this
module is the definition the native kernels are tested against. The only error beyond the
weights' own is rounding ``x`` to int8: at most ``s_x / 2`` per input, so a group's part of an
output is off by at most ``s_x / 2 · Σ_j |w_j|`` (`error_bound` computes it).
"""

from __future__ import annotations

import numpy as np

from aios.quant.packing import unpack
from aios.quant.tensor import QuantizedTensor


def quantize_inputs(x: np.ndarray, group_size: int, groups: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes int8 (batch, groups, group_size), scales float32 (batch, groups), sums int64) of
    float32 inputs (batch, cols), zero-padded to whole groups; round half to even."""
    batch, cols = x.shape
    padded = np.zeros((batch, groups * group_size), np.float32)
    padded[:, :cols] = x
    grouped = padded.reshape(batch, groups, group_size)
    peak = np.abs(grouped).max(axis=2)
    scales = (peak / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inverse = np.where(peak > 0, np.float32(127.0) / peak, np.float32(0.0)).astype(np.float32)
    codes = np.clip(np.rint(grouped * inverse[:, :, None]), -127, 127).astype(np.int8)
    return codes, scales, codes.sum(axis=2, dtype=np.int64)


def zero_points(q: QuantizedTensor) -> np.ndarray:
    """(rows, groups) float zero points; a symmetric tensor's fixed ``2**(bits-1)``."""
    if q.zero_points is None:
        return np.full(q.scales.shape, 2 ** (q.bits - 1), np.float64)
    return q.zero_points.astype(np.float64)


def matmul_q8(q: QuantizedTensor, x: np.ndarray) -> np.ndarray:
    """``x @ W.T`` (float32, (batch, rows)) with `x` quantized to int8 per row and group."""
    groups = q.scales.shape[1]
    codes, x_scales, sums = quantize_inputs(x, q.group_size, groups)
    w_codes = unpack(q.data, q.bits).reshape(q.rows, groups, q.group_size).astype(np.int64)
    dots = np.einsum("bgj,rgj->brg", codes.astype(np.int64), w_codes)
    exact = dots - zero_points(q)[None, :, :] * sums[:, None, :]
    scale = q.scales.astype(np.float64)[None, :, :] * x_scales.astype(np.float64)[:, None, :]
    return (scale * exact).sum(axis=2).astype(np.float32)


class ReferenceProduct:
    """`matmul_q8` bound to one validated weight: ``run(x, out)`` (the reference backend's
    counterpart of the native prepared product)."""

    def __init__(self, q: QuantizedTensor) -> None:
        self.q = q.validate()

    def run(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        out[...] = matmul_q8(self.q, x)
        return out


def error_bound(dequantized: np.ndarray, x: np.ndarray, group_size: int) -> np.ndarray:
    """(batch, rows): the most rounding the inputs to int8 can move each output away from
    ``x @ dequantized.T`` (Σ over groups of ``max|x_g| / 254 · Σ |w_g|``)."""
    rows, cols = dequantized.shape
    groups = -(-cols // group_size)
    pad = groups * group_size - cols
    w = np.pad(np.abs(dequantized.astype(np.float64)), ((0, 0), (0, pad)))
    xs = np.pad(np.abs(x.astype(np.float64)), ((0, 0), (0, pad)))
    l1 = w.reshape(rows, groups, group_size).sum(axis=2)
    peak = xs.reshape(len(x), groups, group_size).max(axis=2)
    return (peak / 254.0) @ l1.T


__all__ = ["ReferenceProduct", "error_bound", "matmul_q8", "quantize_inputs", "zero_points"]
