"""GPTQ-style error correction (`aios.quant.gptq`) through the reference quantizer."""

import numpy as np
import pytest

from aios.errors import QuantizationError
from aios.quant import ReferenceQuantizer, dequantize


def correlated_inputs(n, cols, seed=0):
    """Activations with strongly correlated features, as real layer inputs have."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, cols)) @ rng.normal(size=(cols, cols))).astype(np.float32)


def output_error(x, w, q):
    return float(np.linalg.norm(x @ (dequantize(q) - w).T))


@pytest.mark.parametrize("bits", [2, 4])
def test_error_correction_lowers_the_layer_output_error(bits):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(48, 96)).astype(np.float32)
    x = correlated_inputs(256, 96)
    plain = ReferenceQuantizer(bits=bits, group_size=32).quantize(w)
    corrected = ReferenceQuantizer(bits=bits, group_size=32, error_correction=True).quantize(
        w, calibration=x)
    assert corrected.method == "gptq" and plain.method == "rtn"
    assert output_error(x, w, corrected) < 0.85 * output_error(x, w, plain)


def test_error_corrected_tensors_have_the_plain_layout_with_padding():
    w = np.random.default_rng(2).normal(size=(8, 70)).astype(np.float32)
    q = ReferenceQuantizer(bits=4, group_size=32, error_correction=True).quantize(
        w, calibration=correlated_inputs(64, 70))
    assert q.validate().padding == 26
    assert dequantize(q).shape == (8, 70)


def test_eight_bits_rounds_plainly_even_with_error_correction_on():
    w = np.random.default_rng(3).normal(size=(4, 64)).astype(np.float32)
    corrected = ReferenceQuantizer(bits=8, group_size=32, error_correction=True).quantize(
        w, calibration=correlated_inputs(16, 64))
    plain = ReferenceQuantizer(bits=8, group_size=32).quantize(w)
    np.testing.assert_array_equal(corrected.data, plain.data)


def test_error_correction_without_calibration_is_refused():
    with pytest.raises(QuantizationError, match="needs calibration inputs for fc"):
        ReferenceQuantizer(error_correction=True).quantize(np.ones((4, 32), np.float32), name="fc")


def test_calibration_of_the_wrong_width_is_refused():
    with pytest.raises(QuantizationError, match="must end in the layer's 32 input features"):
        ReferenceQuantizer(group_size=32, error_correction=True).quantize(
            np.ones((4, 32), np.float32), calibration=np.ones((8, 31), np.float32))
