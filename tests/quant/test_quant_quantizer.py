"""The reference quantizer plugin (`aios.quant.quantizer`)."""

import numpy as np
import pytest
import torch

from aios.errors import QuantizationError
from aios.quant import QuantizedTensor, ReferenceQuantizer
from aios.registry import Registry


def test_the_core_registers_the_reference_quantizer_at_priority_0():
    import aios.builtin

    registry = Registry()
    registry.add_plugin(aios.builtin, name="core", distribution="aios", version="0")
    entry = registry.get("quantizer", "reference")
    assert entry.factory is ReferenceQuantizer and entry.priority == 0


def test_embeddings_norms_output_projection_and_vectors_stay_16_bit():
    tensors = {
        "tok_embeddings.weight": np.ones((10, 32), np.float32),
        "layers.0.attn_norm.weight": np.ones((4, 32), np.float32),
        "lm_head.weight": np.ones((10, 32), np.float32),
        "layers.0.bias": np.ones(32, np.float32),
        "layers.0.mlp.weight": np.ones((8, 32), np.float32),
    }
    out = ReferenceQuantizer(group_size=32).quantize_model(tensors)
    assert isinstance(out["layers.0.mlp.weight"], QuantizedTensor)
    for name in ("tok_embeddings.weight", "layers.0.attn_norm.weight", "lm_head.weight",
                 "layers.0.bias"):
        assert out[name].dtype == np.float16, name


def test_keep_patterns_can_be_replaced():
    q = ReferenceQuantizer(group_size=32, keep="*mlp*")
    out = q.quantize_model({"lm_head.weight": np.ones((4, 32), np.float32),
                            "mlp.weight": np.ones((4, 32), np.float32)})
    assert isinstance(out["lm_head.weight"], QuantizedTensor)
    assert out["mlp.weight"].dtype == np.float16


def test_non_float_tensors_pass_through_unchanged():
    out = ReferenceQuantizer().quantize_model({"step": np.array([7, 8], np.int64),
                                               "ids": torch.arange(3)})
    assert out["step"].tolist() == [7, 8] and out["step"].dtype == np.int64
    assert out["ids"].tolist() == [0, 1, 2]


def test_quantize_model_uses_each_layers_calibration():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 64)).astype(np.float32)
    out = ReferenceQuantizer(group_size=32, error_correction=True).quantize_model(
        {"fc.weight": w}, calibration={"fc.weight": rng.normal(size=(32, 64))})
    assert out["fc.weight"].method == "gptq"


def test_dequantize_writes_into_a_torch_tensor_without_a_copy():
    quantizer = ReferenceQuantizer(bits=8, group_size=32)
    q = quantizer.quantize(np.linspace(-1, 1, 128, dtype=np.float32).reshape(2, 64))
    target = torch.zeros(2, 64)
    returned = quantizer.dequantize(q, out=target.numpy())
    assert np.shares_memory(returned, target.numpy())
    np.testing.assert_array_equal(target.numpy(), quantizer.dequantize(q))


def test_an_output_buffer_of_the_wrong_size_or_dtype_is_refused():
    quantizer = ReferenceQuantizer(group_size=32)
    q = quantizer.quantize(np.ones((2, 32), np.float32))
    with pytest.raises(QuantizationError, match="64 values"):
        quantizer.dequantize(q, out=np.empty(63, np.float32))
    with pytest.raises(QuantizationError, match="float32"):
        quantizer.dequantize(q, out=np.empty(64, np.float64))


def test_options_are_checked_when_the_quantizer_is_built():
    with pytest.raises(QuantizationError, match="choose 2, 4 or 8"):
        ReferenceQuantizer(bits=3)


def test_the_reference_quantizer_satisfies_the_quantizer_protocol():
    from aios.protocols import Quantizer

    assert isinstance(ReferenceQuantizer(), Quantizer)
