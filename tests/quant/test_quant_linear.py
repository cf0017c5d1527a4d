"""The quantized linear layer (`aios.quant.linear`) against torch's float nn.Linear."""

import numpy as np
import pytest
import torch

from aios.errors import QuantizationError
from aios.quant import ReferenceQuantizer
from aios.quant.activations import error_bound
from aios.quant.linear import FUSED_MAX_BATCH, QuantizedLinear, best_quantizer


def float_twin(layer: QuantizedLinear, bias: torch.Tensor | None) -> torch.nn.Linear:
    """An nn.Linear holding the quantized layer's dequantized weight."""
    twin = torch.nn.Linear(layer.in_features, layer.out_features, bias=bias is not None)
    with torch.no_grad():
        twin.weight.copy_(layer.dequantized_weight())
        if bias is not None:
            twin.bias.copy_(bias)
    return twin


@pytest.mark.parametrize("backend", ["reference", "best"])
@pytest.mark.parametrize("batch", [1, 3, FUSED_MAX_BATCH, FUSED_MAX_BATCH + 5])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_forward_equals_float_linear_on_the_dequantized_weight(backend, batch, bits):
    torch.manual_seed(bits)
    linear = torch.nn.Linear(100, 37)
    quantizer = ReferenceQuantizer(bits=bits, group_size=32) if backend == "reference" \
        else best_quantizer(bits=bits, group_size=32)
    layer = QuantizedLinear.from_linear(linear, quantizer, activations="float")
    x = torch.randn(batch, 100)
    with torch.no_grad():
        expected = float_twin(layer, linear.bias)(x)
        got = layer(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["reference", "best"])
@pytest.mark.parametrize("batch", [1, 4, 33])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_int8_activations_stay_within_the_per_group_bound_of_the_float_product(
        backend, batch, bits):
    torch.manual_seed(bits + batch)
    linear = torch.nn.Linear(200, 40)
    quantizer = ReferenceQuantizer(bits=bits, group_size=64) if backend == "reference" \
        else best_quantizer(bits=bits, group_size=64)
    layer = QuantizedLinear.from_linear(linear, quantizer)
    assert layer.activations == "int8"
    x = torch.randn(batch, 200)
    with torch.no_grad():
        exact = float_twin(layer, linear.bias)(x).numpy().astype(np.float64)
        got = layer(x).numpy()
    bound = error_bound(layer.dequantized_weight().numpy(), x.numpy(), 64)
    error = np.abs(got - exact)
    assert (error <= bound + 1e-4).all()
    assert 0 < error.mean() < 0.25 * bound.mean()  # quantized, and far from the worst case


def test_an_unknown_activation_mode_is_refused():
    q = ReferenceQuantizer(group_size=32).quantize(np.ones((2, 32), np.float32))
    with pytest.raises(QuantizationError, match="activations must be one of int8, float"):
        QuantizedLinear(q, activations="int4")


def test_set_activations_switches_a_whole_model_between_int8_and_exact():
    from aios.quant.linear import quantize_linears, set_activations

    torch.manual_seed(0)
    model = quantize_linears(TinyModel(), best_quantizer(bits=8, group_size=32))
    ids = torch.arange(10)[None]
    with torch.no_grad():
        int8 = model(ids)
        exact = set_activations(model, "float")(ids)
        assert model.up.activations == "float"
        assert not torch.equal(int8, exact)
        torch.testing.assert_close(int8, exact, rtol=0.05, atol=0.02)
        torch.testing.assert_close(set_activations(model, "int8")(ids), int8)


def test_leading_dimensions_are_kept():
    layer = QuantizedLinear.from_linear(torch.nn.Linear(64, 16, bias=False),
                                        ReferenceQuantizer(group_size=32))
    with torch.no_grad():
        assert layer(torch.randn(2, 3, 64)).shape == (2, 3, 16)


def test_inputs_that_need_a_gradient_take_the_differentiable_path():
    layer = QuantizedLinear.from_linear(torch.nn.Linear(64, 16), ReferenceQuantizer(group_size=32))
    x = torch.randn(1, 64, requires_grad=True)
    layer(x).sum().backward()
    expected = layer.dequantized_weight().sum(0)
    torch.testing.assert_close(x.grad[0], expected)


def test_an_input_of_the_wrong_width_is_refused():
    layer = QuantizedLinear.from_linear(torch.nn.Linear(64, 16), ReferenceQuantizer(group_size=32))
    with pytest.raises(QuantizationError, match="63 features, the layer expects 64"):
        layer(torch.randn(1, 63))


def test_a_weight_that_is_not_2d_is_refused():
    q = ReferenceQuantizer(group_size=32).quantize(np.ones((2, 2, 32), np.float32))
    with pytest.raises(QuantizationError, match="2-D weight"):
        QuantizedLinear(q)


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 64)
        self.up = torch.nn.Linear(64, 96)
        self.down = torch.nn.Linear(96, 64, bias=False)
        self.lm_head = torch.nn.Linear(64, 50)

    def forward(self, ids):
        h = self.embed(ids)
        return self.lm_head(h + self.down(torch.relu(self.up(h))))


def test_quantize_linears_replaces_all_but_the_kept_layers():
    from aios.quant.linear import quantize_linears

    model = quantize_linears(TinyModel(), ReferenceQuantizer(group_size=32))
    assert isinstance(model.up, QuantizedLinear) and isinstance(model.down, QuantizedLinear)
    assert type(model.lm_head) is torch.nn.Linear  # the output projection stays 16/32-bit


def test_dequantize_linears_gives_trainable_layers_with_the_same_outputs():
    from aios.quant.linear import dequantize_linears, quantize_linears

    model = quantize_linears(TinyModel(), ReferenceQuantizer(group_size=32), activations="float")
    ids = torch.arange(10)[None]
    with torch.no_grad():
        quantized = model(ids)
    expected = model.up.dequantized_weight()
    dequantize_linears(model)
    assert not any(isinstance(m, QuantizedLinear) for m in model.modules())
    assert type(model.up) is torch.nn.Linear and model.up.weight.requires_grad
    assert torch.equal(model.up.weight.detach(), expected)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), quantized, rtol=1e-5, atol=1e-5)


def test_a_quantized_file_loads_into_a_model_that_runs_on_the_mapped_codes(tmp_path):
    from aios.io.weights import load_weights, save_weights
    from aios.quant.linear import load_quantized

    torch.manual_seed(0)
    source = TinyModel()
    quantizer = ReferenceQuantizer(bits=4, group_size=32)
    save_weights(tmp_path / "m.arrow", quantizer.quantize_model(source.state_dict()))
    model = load_quantized(TinyModel(), load_weights(tmp_path / "m.arrow"), backend=quantizer,
                           activations="float")
    assert isinstance(model.up, QuantizedLinear)
    # The float twin: the source with every tensor replaced by what the file holds, dequantized.
    twin = TinyModel()
    with torch.no_grad():
        for name, value in load_weights(tmp_path / "m.arrow").items():
            tensor = quantizer.dequantize(value) if not isinstance(value, np.ndarray) else value
            twin.state_dict()[name].copy_(torch.as_tensor(np.array(tensor)))
        ids = torch.tensor([[1, 2, 3]])
        torch.testing.assert_close(model(ids), twin(ids), rtol=1e-4, atol=1e-4)


def test_loading_weights_of_another_architecture_is_refused(tmp_path):
    from aios.quant.linear import load_quantized

    with pytest.raises(QuantizationError, match=r"missing \['down.weight'"):
        load_quantized(TinyModel(), {k: v for k, v in TinyModel().state_dict().items()
                                     if k != "down.weight"})

