"""Moving arrays between the host and a runtime's device, for code written once for NumPy
arrays and torch tensors (the Python array API standard, through `array-api-compat`).

Why here: the samplers and the block decoders both keep vocabulary-sized work on the device and
bring back only per-position results; both need the same two moves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_numpy_array, to_device


def to_host(array: Any) -> np.ndarray:
    """`array` as a NumPy array on the host (no copy for NumPy input)."""
    if is_numpy_array(array):
        return array
    if device(array) != "cpu":
        array = to_device(array, "cpu")
    return np.asarray(array)


def like(host: np.ndarray, reference: Any, dtype: Any = None) -> Any:
    """The host array `host` in the namespace and on the device of `reference`."""
    if is_numpy_array(reference):
        return host if dtype is None else host.astype(dtype, copy=False)
    xp = array_namespace(reference)
    return xp.asarray(host, dtype=dtype, device=device(reference))


__all__ = ["like", "to_host"]
