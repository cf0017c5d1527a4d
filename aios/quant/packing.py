"""Packing low-bit codes into bytes: 8 bits one per byte, 4 bits two per byte, 2 bits four.

The layout is the contract the native kernels share: within a byte, the code with the lowest
index sits in the lowest bits (little-endian nibbles / crumbs). Rows are packed independently
and always hold a whole number of bytes, because a row is padded to a multiple of the group size
and every group size is a multiple of four.
"""

from __future__ import annotations

import numpy as np

from aios.errors import QuantizationError

#: The bit widths a quantized tensor can have.
BITS = (2, 4, 8)


def check_bits(bits: int) -> int:
    """Return `bits` if it is a supported width, else raise with the supported ones."""
    if bits not in BITS:
        raise QuantizationError(f"{bits} bits is not supported; choose 2, 4 or 8")
    return bits


def per_byte(bits: int) -> int:
    """How many codes one byte holds."""
    return 8 // check_bits(bits)


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack uint8 codes (each < 2**bits) of shape (rows, cols) into (rows, cols * bits / 8)."""
    n = per_byte(bits)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    rows, cols = codes.shape
    if cols % n:
        raise QuantizationError(f"a row of {cols} codes does not fill whole bytes at {bits} bits")
    if n == 1:
        return codes.copy()
    grouped = codes.reshape(rows, cols // n, n)
    packed = np.zeros((rows, cols // n), dtype=np.uint8)
    for i in range(n):
        packed |= grouped[:, :, i] << np.uint8(i * bits)
    return packed


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of `pack`: (rows, bytes) -> uint8 codes of shape (rows, bytes * 8 / bits)."""
    n = per_byte(bits)
    packed = np.asarray(packed, dtype=np.uint8)
    if n == 1:
        return packed.copy()
    mask = np.uint8((1 << bits) - 1)
    rows, nbytes = packed.shape
    codes = np.empty((rows, nbytes, n), dtype=np.uint8)
    for i in range(n):
        codes[:, :, i] = (packed >> np.uint8(i * bits)) & mask
    return codes.reshape(rows, nbytes * n)
