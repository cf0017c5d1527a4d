"""The native quantizer: bit-identical to the reference, fused kernels, errors."""

import numpy as np
import pytest
import torch
from aios_native.quant import NativeQuantizer
from hypothesis import given, settings
from hypothesis import strategies as st

from aios.config import load_config
from aios.errors import QuantizationError
from aios.io.weights import load_weights, save_weights
from aios.quant import ReferenceQuantizer, activations, pack
from aios.quant.linear import QuantizedLinear, best_quantizer
from aios.registry import default_registry
from aios_native import quant as native


def gaussian(shape, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * scale).astype(np.float32)


def assert_identical(a, b):
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.scales.view(np.uint16), b.scales.view(np.uint16))
    if a.zero_points is None:
        assert b.zero_points is None
    else:
        np.testing.assert_array_equal(a.zero_points, b.zero_points)
    assert a.padding == b.padding


def test_native_registers_above_reference_so_auto_picks_it():
    registry = default_registry()
    assert registry.get("quantizer", "native").priority > registry.get(
        "quantizer", "reference").priority
    assert load_config(None, [], registry).quantizer.name == "native"
    assert isinstance(best_quantizer(), NativeQuantizer)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [False, True])
def test_packed_data_scales_and_zero_points_are_bit_identical_to_the_reference(
        bits, group_size, symmetric):
    w = gaussian((33, 300), seed=bits)
    options = {"bits": bits, "group_size": group_size, "symmetric": symmetric}
    assert_identical(NativeQuantizer(**options).quantize(w),
                     ReferenceQuantizer(**options).quantize(w))


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 7), cols=st.integers(1, 300), bits=st.sampled_from([2, 4, 8]),
       group_size=st.sampled_from([4, 32, 64, 128]), symmetric=st.booleans(),
       scale=st.sampled_from([1e-6, 1e-2, 1.0, 300.0]), seed=st.integers(0, 2**32 - 1))
def test_odd_shapes_give_identical_bytes_and_values_in_both_backends(
        rows, cols, bits, group_size, symmetric, scale, seed):
    w = gaussian((rows, cols), seed, scale)
    options = {"bits": bits, "group_size": group_size, "symmetric": symmetric}
    fast, ref = NativeQuantizer(**options), ReferenceQuantizer(**options)
    q = fast.quantize(w)
    assert_identical(q, ref.quantize(w))
    np.testing.assert_array_equal(fast.dequantize(q).view(np.uint32),
                                  ref.dequantize(q).view(np.uint32))


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [False, True])
def test_native_round_trip_through_a_memory_mapped_file(tmp_path, bits, group_size, symmetric):
    quantizer = NativeQuantizer(bits=bits, group_size=group_size, symmetric=symmetric)
    w = gaussian((20, 150), seed=3)
    q = quantizer.quantize(w)
    save_weights(tmp_path / "m.arrow", {"w": q})
    loaded = load_weights(tmp_path / "m.arrow")["w"]
    restored = quantizer.dequantize(loaded)  # reads the mapped pages directly
    np.testing.assert_array_equal(restored, ReferenceQuantizer().dequantize(q))
    assert np.abs(restored - w).max() <= 1.2 * float(q.scales.astype(np.float32).max())


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_native_pack_and_unpack_match_the_reference(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, (5, 64), dtype=np.uint8)
    np.testing.assert_array_equal(native.pack(codes, bits), pack(codes, bits))
    np.testing.assert_array_equal(native.unpack(pack(codes, bits), bits), codes)


def test_dequantize_writes_into_a_torch_tensor_in_place():
    quantizer = NativeQuantizer(bits=4, group_size=32)
    q = quantizer.quantize(gaussian((16, 64)))
    target = torch.full((16, 64), float("nan"))
    quantizer.dequantize(q, out=target.numpy())
    np.testing.assert_array_equal(target.numpy(), ReferenceQuantizer().dequantize(q))


@pytest.mark.parametrize("batch", [1, 2, 5, 8])
@pytest.mark.parametrize(("bits", "symmetric"), [(2, False), (4, False), (4, True), (8, False)])
def test_the_fused_product_equals_float_linear_on_the_dequantized_weight(batch, bits, symmetric):
    torch.manual_seed(batch)
    linear = torch.nn.Linear(200, 48)
    layer = QuantizedLinear.from_linear(
        linear, NativeQuantizer(bits=bits, group_size=64, symmetric=symmetric),
        activations="float")
    twin = torch.nn.Linear(200, 48)
    with torch.no_grad():
        twin.weight.copy_(layer.dequantized_weight())
        twin.bias.copy_(linear.bias)
        x = torch.randn(batch, 200)
        torch.testing.assert_close(layer(x), twin(x), rtol=1e-4, atol=1e-4)


#: The instruction sets this CPU runs: the detected one and every one below it.
ISAS = {"vnni": ["vnni", "avx2", "portable"], "avx2": ["avx2", "portable"],
        "portable": ["portable"]}[native.dot_isa()]


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 300), batch=st.integers(1, 40),
       bits=st.sampled_from([2, 4, 8]), group_size=st.sampled_from([32, 64, 128]),
       symmetric=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_every_instruction_set_computes_the_reference_int8_product(
        rows, cols, batch, bits, group_size, symmetric, seed):
    quantizer = NativeQuantizer(bits=bits, group_size=group_size, symmetric=symmetric)
    q = quantizer.quantize(gaussian((rows, cols), seed))
    x = gaussian((batch, cols), seed + 1, scale=3.0)
    expected = activations.matmul_q8(q, x)
    for isa in ISAS:
        out = quantizer.matmul_q8(q, x, np.empty((batch, rows), np.float32), isa=isa)
        # The same integer sums; only float rounding of the per-group terms differs.
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(),
                                   err_msg=isa)


def test_the_int8_product_reads_weights_straight_from_a_mapped_file(tmp_path):
    quantizer = NativeQuantizer(bits=4, group_size=128)
    save_weights(tmp_path / "m.arrow", {"w": quantizer.quantize(gaussian((64, 384)))})
    q = load_weights(tmp_path / "m.arrow")["w"]
    x = gaussian((16, 384), seed=2)
    out = quantizer.prepared_q8(q).run(x, np.empty((16, 64), np.float32))
    np.testing.assert_allclose(out, activations.matmul_q8(q, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bits", [8, 4])
def test_the_helper_thread_and_rayon_give_the_same_product_bit_for_bit(bits):
    """On two cores the rows are split between the caller and the helper thread, or across
    rayon's pool (`helper=False`, what torch-driven layers use under torch's default OpenMP
    policy); either way each output is computed by one thread the same way."""
    quantizer = NativeQuantizer(bits=bits, group_size=128)
    q = quantizer.quantize(gaussian((3072, 576), seed=5))
    for batch in (1, 8, 33):
        x = gaussian((batch, 576), seed=batch)
        with_helper = quantizer.prepared_q8(q).run(x, np.empty((batch, 3072), np.float32))
        without = quantizer.prepared_q8(q, helper=False).run(
            x, np.empty((batch, 3072), np.float32))
        np.testing.assert_array_equal(with_helper, without)
        np.testing.assert_allclose(with_helper, activations.matmul_q8(q, x), rtol=1e-4,
                                   atol=1e-3)


def test_torch_layers_use_the_helper_only_when_openmp_threads_sleep(monkeypatch):
    weight = NativeQuantizer(bits=8).quantize(gaussian((64, 128)))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert QuantizedLinear(weight)._product.helper is True
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert QuantizedLinear(weight)._product.helper is False


def test_an_unknown_instruction_set_is_refused_by_name():
    quantizer = NativeQuantizer(bits=8, group_size=32)
    q = quantizer.quantize(gaussian((4, 64)))
    with pytest.raises(QuantizationError, match='unknown instruction set "sse9"'):
        quantizer.matmul_q8(q, gaussian((1, 64)), np.empty((1, 4), np.float32), isa="sse9")


def test_the_fused_product_reads_weights_straight_from_a_mapped_file(tmp_path):
    quantizer = NativeQuantizer(bits=4, group_size=32)
    w = gaussian((24, 96))
    save_weights(tmp_path / "m.arrow", {"w": quantizer.quantize(w)})
    q = load_weights(tmp_path / "m.arrow")["w"]
    x = gaussian((3, 96), seed=1)
    out = quantizer.matmul(q, x, np.empty((3, 24), np.float32))
    np.testing.assert_allclose(out, x @ quantizer.dequantize(q).T, rtol=1e-4, atol=1e-4)


def test_the_fused_product_refuses_inputs_of_the_wrong_shape():
    quantizer = NativeQuantizer(bits=4, group_size=32)
    q = quantizer.quantize(gaussian((4, 64)))
    with pytest.raises(QuantizationError, match=r"inputs must be float32 \(batch, 64\)"):
        quantizer.matmul(q, np.ones((1, 63), np.float32), np.empty((1, 4), np.float32))


def test_nan_is_refused_by_the_native_backend_too():
    w = gaussian((3, 64))
    w[1, 2] = np.nan
    with pytest.raises(QuantizationError, match="NaN or infinite"):
        NativeQuantizer().quantize(w)


def test_the_native_quantizer_satisfies_the_quantizer_protocol():
    from aios.protocols import Quantizer

    assert isinstance(NativeQuantizer(), Quantizer)
