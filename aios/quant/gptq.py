"""GPTQ-style error correction: quantize column by column, pushing each column's rounding error
onto the columns not yet quantized, weighted by the inverse Hessian of the layer's inputs.

Plain rounding minimises the error of each weight; what matters is the error of the layer's
*output* on real inputs, ``||X W^T - X Q^T||``. With ``H = X^T X`` (from a few calibration
batches) the optimal update of the remaining weights after rounding column ``i`` is
``-err_i * Hinv[i, i:] / Hinv[i, i]`` (Frantar et al., 2022, "GPTQ"). Using the Cholesky factor
of ``H^-1`` makes the sweep stable, and updating in blocks keeps most of the work in BLAS.
Scales and zero points are taken per group from the already-corrected weights, on the same grid
as plain rounding, so the result is an ordinary `QuantizedTensor`.
"""

from __future__ import annotations

import numpy as np

from aios.errors import QuantizationError
from aios.quant.affine import group_params, quantize_values
from aios.quant.packing import pack
from aios.quant.tensor import padding_for


def hessian(calibration: object, cols: int, name: str = "tensor") -> np.ndarray:
    """``2/n X^T X`` (float64) of calibration inputs ``X`` of shape (..., cols)."""
    x = np.asarray(calibration, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != cols:
        raise QuantizationError(
            f"calibration inputs of {name} have shape {list(x.shape)}; they must end in the "
            f"layer's {cols} input features")
    x = x.reshape(-1, cols)
    if x.shape[0] == 0 or not np.isfinite(x).all():
        raise QuantizationError(
            f"calibration inputs of {name} are empty or hold NaN/inf; record real activations")
    return 2.0 / x.shape[0] * (x.T @ x)


def gptq_quantize_matrix(
    matrix: np.ndarray,
    h: np.ndarray,
    bits: int,
    group_size: int,
    symmetric: bool,
    *,
    damp: float = 0.01,
    block: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Error-corrected codes of float32 (rows, cols) given the inputs' Hessian (cols, cols).

    Returns packed codes, f16 scales and zero points laid out exactly like `quantize_matrix`.
    """
    rows, cols = matrix.shape
    pad = padding_for(cols, group_size)
    width = cols + pad
    w = np.pad(matrix, ((0, 0), (0, pad)), mode="edge").astype(np.float64)
    hp = np.zeros((width, width))
    hp[:cols, :cols] = h
    dead = np.diag(hp) == 0
    hp[dead, dead] = 1.0
    hp[np.diag_indices(width)] += damp * float(np.mean(np.diag(hp)))
    try:
        hinv = np.linalg.cholesky(np.linalg.inv(hp)).T  # upper factor of H^-1
    except np.linalg.LinAlgError as exc:
        raise QuantizationError(
            f"the calibration Hessian is not positive definite ({exc}); raise `damp` or give "
            f"more calibration batches") from exc
    groups = width // group_size
    codes = np.empty((rows, width), dtype=np.uint8)
    scales16 = np.empty((rows, groups), dtype=np.float16)
    zeros = np.empty((rows, groups), dtype=np.float32)
    block = block or max(group_size, 128 // group_size * group_size)
    for start in range(0, width, block):
        stop = min(start + block, width)
        w1 = w[:, start:stop].copy()
        err1 = np.zeros_like(w1)
        h1 = hinv[start:stop, start:stop]
        for i in range(stop - start):
            col = start + i
            if col % group_size == 0:
                g = col // group_size
                grp = w1[:, i:i + group_size].astype(np.float32)
                scales16[:, g], s, zeros[:, g] = (
                    a[:, 0] for a in group_params(grp[:, None, :], bits, symmetric))
                s_col, z_col = s, zeros[:, g]
            q = quantize_values(w1[:, i].astype(np.float32), s_col, z_col, bits)
            codes[:, col] = q
            dq = (q.astype(np.float32) - z_col) * s_col
            err = (w1[:, i] - dq) / h1[i, i]
            w1[:, i:] -= np.outer(err, h1[i, i:])
            err1[:, i] = err
        w[:, stop:] -= err1 @ hinv[start:stop, stop:]
    return pack(codes, bits), scales16, None if symmetric else zeros.astype(np.uint8)
