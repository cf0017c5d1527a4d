"""The int8-activation product's reference (`aios.quant.activations`): numerics and bound."""

import numpy as np
import pytest

from aios.quant import ReferenceQuantizer
from aios.quant.activations import error_bound, matmul_q8, quantize_inputs


def gaussian(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def test_inputs_round_to_within_half_a_step_and_pad_with_zeros():
    x = gaussian((3, 100), scale=5.0)
    codes, scales, sums = quantize_inputs(x, 32, 4)
    assert codes.shape == (3, 4, 32) and codes.dtype == np.int8
    restored = (codes * scales[:, :, None]).reshape(3, 128)
    assert np.all(np.abs(restored[:, :100] - x) <= scales.repeat(32, axis=1)[:, :100] / 2 + 1e-6)
    assert not codes.reshape(3, 128)[:, 100:].any()
    assert np.abs(codes).max() == 127  # each group's largest input maps to +-127
    np.testing.assert_array_equal(sums, codes.sum(axis=2))


def test_an_all_zero_group_has_zero_codes_and_scale():
    codes, scales, _ = quantize_inputs(np.zeros((1, 64), np.float32), 32, 2)
    assert not codes.any() and not scales.any()


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_the_product_is_within_the_bound_of_the_float_product_and_not_exact(bits, symmetric):
    quantizer = ReferenceQuantizer(bits=bits, group_size=64, symmetric=symmetric)
    q = quantizer.quantize(gaussian((30, 150)))
    w = quantizer.dequantize(q)
    x = gaussian((7, 150), seed=1)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    error = np.abs(matmul_q8(q, x) - exact)
    bound = error_bound(w, x, 64)
    assert (error <= bound + 1e-5).all()
    assert 0 < error.mean() < 0.25 * bound.mean()


def test_the_bound_is_reached_by_a_worst_case_input():
    # One group; every input sits half a step from its code with the weight's sign.
    step = 1.0 / 127
    x = np.full((1, 32), 0.5 * step, np.float32)
    x[0, 0] = 1.0  # sets the scale to 1/127
    w = np.ones((1, 32), np.float32)
    q = ReferenceQuantizer(bits=8, group_size=32, symmetric=True).quantize(w)
    w_q = ReferenceQuantizer().dequantize(q)
    exact = float((x.astype(np.float64) @ w_q.T.astype(np.float64))[0, 0])
    error = abs(float(matmul_q8(q, x)[0, 0]) - exact)
    bound = float(error_bound(w_q, x, 32)[0, 0])
    assert 0.9 * bound < error <= bound + 1e-6
