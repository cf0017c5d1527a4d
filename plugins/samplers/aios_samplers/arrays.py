"""One sampler code path for NumPy arrays and torch tensors on any device (the Python array API
standard, through `array-api-compat`).

Why: a model on a GPU returns ``batch x length x vocab`` logits there; copying them to the host
every step costs more than the sampler's arithmetic. Samplers therefore do their vocabulary-
sized work (normalising, temperature, top-p, drawing) in the logits' own namespace and device,
and only per-position results (the drawn token and its confidence) come back to the host,
where the per-position bookkeeping (which positions to commit) stays in NumPy.

Random numbers: every draw comes from the caller's `numpy.random.Generator` on the host, a few
uniforms per position (never per vocabulary entry), then moved to the device. So a seed gives
the same tokens on the numpy and the torch runtime (exactly, with float64 logits; with float32
logits a draw can differ only where a uniform falls within rounding of a probability boundary).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace

from aios.runtime import like, to_host


def namespace(array: Any) -> Any:
    """The array API namespace of `array` (NumPy's for lists and scalars)."""
    if isinstance(array, np.ndarray | list | tuple | float | int) or np.isscalar(array):
        return array_namespace(np.asarray(array))
    return array_namespace(array)


def as_float(value: Any, what: str) -> Any:
    """`value` as a float array in its own namespace, in float64 if it is float64, else in
    float32 (bfloat16 and float16 logits would lose the probabilities' tails; float64 would
    double the memory traffic of float32 logits, the sampler's whole cost). The same rule for
    NumPy and torch, so both compute the same numbers."""
    if isinstance(value, np.ndarray | list | tuple) or np.isscalar(value):
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"{what} has dtype {array.dtype}; return a float array")
        return array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)
    xp = array_namespace(value)
    if not xp.isdtype(value.dtype, "real floating"):
        raise TypeError(f"{what} has dtype {value.dtype}; return a float array")
    return value if value.dtype == xp.float64 else xp.astype(value, xp.float32)


__all__ = ["as_float", "like", "namespace", "to_host"]
