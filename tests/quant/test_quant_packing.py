"""Packing codes into bytes (`aios.quant.packing`)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aios.errors import QuantizationError
from aios.quant.packing import pack, unpack


def test_four_bit_codes_pack_low_nibble_first():
    assert pack(np.array([[1, 2, 15, 0]], dtype=np.uint8), 4).tolist() == [[0x21, 0x0F]]


def test_two_bit_codes_pack_four_per_byte_lowest_first():
    assert pack(np.array([[3, 0, 1, 2]], dtype=np.uint8), 2).tolist() == [[0b10_01_00_11]]


def test_eight_bit_codes_are_stored_as_they_are():
    codes = np.array([[0, 7, 255]], dtype=np.uint8)
    assert pack(codes, 8).tolist() == codes.tolist()


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from([2, 4, 8]), rows=st.integers(1, 5), width=st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1))
def test_unpack_inverts_pack(bits, rows, width, seed):
    cols = width * (8 // bits)
    codes = np.random.default_rng(seed).integers(0, 1 << bits, size=(rows, cols), dtype=np.uint8)
    packed = pack(codes, bits)
    assert packed.shape == (rows, cols * bits // 8)
    np.testing.assert_array_equal(unpack(packed, bits), codes)


@pytest.mark.parametrize("bits", [1, 3, 16])
def test_bits_outside_2_4_8_are_refused(bits):
    with pytest.raises(QuantizationError, match="choose 2, 4 or 8"):
        pack(np.zeros((1, 8), dtype=np.uint8), bits)


def test_a_row_that_does_not_fill_whole_bytes_is_refused():
    with pytest.raises(QuantizationError, match="whole bytes"):
        pack(np.zeros((1, 3), dtype=np.uint8), 4)
