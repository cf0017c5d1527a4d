"""The quantized tensor: packed codes plus what it takes to turn them back into floats.

A tensor of any shape is quantized as a matrix of ``rows = prod(shape[:-1])`` by
``cols = shape[-1]`` (the input features of a linear layer's weight), in groups of
``group_size`` consecutive values of a row, each group with its own f16 scale (and, when
asymmetric, its own zero point). A row whose length is not a multiple of the group is padded by
repeating its last value (which leaves the group's range unchanged) and the number of padded
columns is recorded in ``padding``, so the file says exactly what was added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aios.errors import QuantizationError
from aios.quant.packing import check_bits, per_byte

#: The group sizes the issue names; any positive multiple of 4 works, these are the tested ones.
GROUP_SIZES = (32, 64, 128)
DEFAULT_GROUP_SIZE = 128


@dataclass(frozen=True)
class QuantizedTensor:
    """Packed low-bit codes of one tensor, with f16 scales and (asymmetric) uint8 zero points.

    ``data`` is uint8 of shape (rows, padded_cols * bits / 8); ``scales`` float16 and
    ``zero_points`` uint8 are (rows, groups). A symmetric tensor has no stored zero points: its
    codes are offset by ``2**(bits-1)``, which acts as a fixed zero point.
    """

    shape: tuple[int, ...]
    dtype: str
    bits: int
    group_size: int
    symmetric: bool
    data: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray | None
    padding: int
    method: str = "rtn"

    @property
    def quant_type(self) -> str:
        """A short name such as ``int4-asym``: what Parquet tools see in ``quant_type``."""
        return f"int{self.bits}-{'sym' if self.symmetric else 'asym'}"

    @property
    def rows(self) -> int:
        return math.prod(self.shape[:-1])

    @property
    def cols(self) -> int:
        return self.shape[-1]

    @property
    def padded_cols(self) -> int:
        return self.cols + self.padding

    @property
    def groups(self) -> int:
        return self.padded_cols // self.group_size

    @property
    def quant_axis(self) -> int:
        """The axis the groups run along: always the last one."""
        return len(self.shape) - 1

    @property
    def nbytes(self) -> int:
        """Bytes held: packed codes, scales and zero points."""
        extra = 0 if self.zero_points is None else self.zero_points.nbytes
        return self.data.nbytes + self.scales.nbytes + extra

    def zero_point_array(self) -> np.ndarray:
        """Zero points as uint8 (rows, groups), the implicit ``2**(bits-1)`` when symmetric."""
        if self.zero_points is not None:
            return self.zero_points
        return np.full((self.rows, self.groups), 1 << (self.bits - 1), dtype=np.uint8)

    def validate(self) -> QuantizedTensor:
        """Check that the arrays match the recorded layout; raise naming what differs."""
        check_bits(self.bits)
        check_group_size(self.group_size)
        if not self.shape or self.cols == 0:
            raise QuantizationError(f"a quantized tensor needs a non-empty last axis: {self.shape}")
        if self.padded_cols % self.group_size or not 0 <= self.padding < self.group_size:
            raise QuantizationError(
                f"padding {self.padding} does not bring {self.cols} columns to a multiple of "
                f"the group size {self.group_size}")
        expected = {
            "data": ((self.rows, self.padded_cols // per_byte(self.bits)), np.uint8),
            "scales": ((self.rows, self.groups), np.float16),
        }
        if not self.symmetric:
            expected["zero_points"] = ((self.rows, self.groups), np.uint8)
        elif self.zero_points is not None:
            raise QuantizationError("a symmetric tensor stores no zero points")
        for field, (shape, dtype) in expected.items():
            array = getattr(self, field)
            if array is None or array.shape != shape or array.dtype != dtype:
                found = None if array is None else f"{array.dtype}{list(array.shape)}"
                raise QuantizationError(
                    f"{field} should be {np.dtype(dtype)}{list(shape)} for a {self.quant_type} "
                    f"tensor of shape {list(self.shape)} in groups of {self.group_size}, "
                    f"found {found}")
        return self


def check_group_size(group_size: int) -> int:
    """Return `group_size` if codes of any width fill whole bytes per group, else raise."""
    if group_size <= 0 or group_size % 4:
        raise QuantizationError(
            f"group size {group_size} is not a positive multiple of 4; use 32, 64 or 128")
    return group_size


def padding_for(cols: int, group_size: int) -> int:
    """Columns to add so a row of `cols` values splits into whole groups."""
    return (-cols) % group_size
