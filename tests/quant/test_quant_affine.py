"""Group-wise affine quantization, the NumPy reference (`aios.quant.affine`)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aios.errors import QuantizationError
from aios.quant import dequantize, quantize, unpack


def gaussian(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def step_of(q):
    """The scale of each weight's group, shaped like the tensor."""
    s = np.repeat(q.scales.astype(np.float32), q.group_size, axis=1)[:, : q.cols]
    return s.reshape(q.shape)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [False, True])
def test_every_value_comes_back_within_about_one_step(bits, group_size, symmetric):
    w = gaussian((16, 256))
    q = quantize(w, bits=bits, group_size=group_size, symmetric=symmetric)
    # Half a step inside the range; the rounded zero point and f16 scale add at most ~half more.
    assert np.all(np.abs(dequantize(q) - w) <= 1.2 * step_of(q))


@pytest.mark.parametrize(("bits", "min_cosine"), [(8, 0.9999), (4, 0.99), (2, 0.85)])
def test_reconstruction_cosine_per_bit_width(bits, min_cosine):
    w = gaussian((64, 512), seed=1)
    restored = dequantize(quantize(w, bits=bits, group_size=64))
    cosine = float((w * restored).sum() / np.linalg.norm(w) / np.linalg.norm(restored))
    assert cosine >= min_cosine


def test_layout_is_packed_codes_f16_scales_and_uint8_zero_points():
    q = quantize(gaussian((3, 5, 64)), bits=4, group_size=32)
    assert (q.rows, q.cols, q.groups) == (15, 64, 2)
    assert q.data.dtype == np.uint8 and q.data.shape == (15, 32)
    assert q.scales.dtype == np.float16 and q.scales.shape == (15, 2)
    assert q.zero_points.dtype == np.uint8 and q.zero_points.shape == (15, 2)
    assert dequantize(q).shape == (3, 5, 64)
    assert q.quant_type == "int4-asym" and q.quant_axis == 2


def test_symmetric_tensors_store_no_zero_points():
    q = quantize(gaussian((4, 64)), bits=4, group_size=32, symmetric=True)
    assert q.zero_points is None and q.quant_type == "int4-sym"


def test_zero_is_exact_in_asymmetric_groups():
    w = gaussian((2, 64)) + 3.0  # all positive: the range is widened to include 0
    w[1, 7] = 0.0
    assert dequantize(quantize(w, bits=4, group_size=32))[1, 7] == 0.0


def test_an_all_zero_group_is_stored_with_scale_one_and_comes_back_zero():
    q = quantize(np.zeros((1, 32), np.float32), bits=2, group_size=32)
    assert q.scales.tolist() == [[1.0]]
    assert not dequantize(q).any()


def test_a_row_not_divisible_by_the_group_is_padded_with_its_last_value_and_recorded():
    w = gaussian((2, 70))
    q = quantize(w, bits=8, group_size=32)
    assert q.padding == 26 and q.padded_cols == 96 and q.groups == 3
    codes = unpack(q.data, 8)
    assert np.all(codes[:, 70:] == codes[:, 69:70])
    assert dequantize(q).shape == (2, 70)


def test_rounding_is_half_to_even():
    # scale 1 (range 0..255 at 8 bits): 0.5 -> 0 and 1.5 -> 2, as np.rint and Rust agree.
    w = np.zeros((1, 32), np.float32)
    w[0, :4] = [0.5, 1.5, 2.5, 255.0]
    codes = unpack(quantize(w, bits=8, group_size=32).data, 8)
    assert codes[0, :3].tolist() == [0, 2, 2]


def test_a_bfloat16_torch_tensor_quantizes_like_its_float32_values():
    t = torch.randn(4, 64, dtype=torch.bfloat16)
    q = quantize(t, bits=4, group_size=32)
    expected = quantize(t.float().numpy(), bits=4, group_size=32)
    np.testing.assert_array_equal(q.data, expected.data)
    assert q.dtype == "bfloat16"


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.uint8])
def test_non_float_tensors_are_refused_naming_the_fix(dtype):
    with pytest.raises(QuantizationError, match=r"layer\.w has dtype .*only floating-point"):
        quantize(np.ones((4, 32), dtype=dtype), name="layer.w")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_with_the_first_position(bad):
    w = gaussian((3, 40))
    w[2, 5] = bad
    with pytest.raises(QuantizationError, match=r"1 NaN or infinite .* index \(2, 5\)"):
        quantize(w, name="w")


@pytest.mark.parametrize("bits", [1, 3, 5, 16])
def test_bits_outside_2_4_8_are_refused(bits):
    with pytest.raises(QuantizationError, match="choose 2, 4 or 8"):
        quantize(gaussian((2, 32)), bits=bits)


@pytest.mark.parametrize("group_size", [0, -32, 30])
def test_group_sizes_that_are_not_positive_multiples_of_4_are_refused(group_size):
    with pytest.raises(QuantizationError, match="multiple of 4"):
        quantize(gaussian((2, 32)), group_size=group_size)


def test_a_range_beyond_float16_scales_is_refused():
    w = np.zeros((1, 32), np.float32)
    w[0, 0] = 1e9
    with pytest.raises(QuantizationError, match="float16 maximum"):
        quantize(w, bits=8)


def test_scalars_and_empty_tensors_are_refused():
    with pytest.raises(QuantizationError, match="non-empty axis"):
        quantize(np.float32(1.0))
    with pytest.raises(QuantizationError, match="non-empty axis"):
        quantize(np.zeros((3, 0), np.float32))


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 300), bits=st.sampled_from([2, 4, 8]),
       group_size=st.sampled_from([4, 32, 64, 128]), symmetric=st.booleans(),
       scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**32 - 1))
def test_odd_shapes_round_trip_within_one_step(rows, cols, bits, group_size, symmetric, scale,
                                               seed):
    w = gaussian((rows, cols), seed) * np.float32(scale)
    q = quantize(w, bits=bits, group_size=group_size, symmetric=symmetric)
    assert q.padding == (-cols) % group_size
    restored = dequantize(q)
    assert restored.shape == w.shape
    assert np.all(np.abs(restored - w) <= 1.2 * step_of(q) + 1e-12)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_tiny_groups_with_subnormal_f16_scales_are_not_clipped(bits):
    # 0.00049 / 255 is an f16 subnormal; rounding the scale down would clip this value by 2.5
    # steps, so the scale is rounded up instead.
    w = np.array([[0.00048637]], np.float32)
    q = quantize(w, bits=bits, group_size=4)
    assert q.scales.astype(np.float32)[0, 0] * ((1 << bits) - 1) >= w[0, 0]
    assert abs(dequantize(q)[0, 0] - w[0, 0]) <= 0.5 * float(q.scales[0, 0]) + 1e-12
