"""ClassConditionalHead on the torch runtime (`RuntimeContinuousModel`): the same predictions
as the NumPy model in float32, the network in the runtime's dtype, compiled when asked, and
the same parameter counts; the engine hands it the runtime (`runtime.name: torch`)."""

import numpy as np
import pytest
import torch

import aios
from aios.config import load_config
from aios.engine import ArrowEngine
from aios.models.gaussian import RuntimeContinuousModel, save_continuous_model
from aios.models.gaussian_numpy import ArrayContinuousModel
from aios.protocols import Guided
from aios.runtime import RuntimeChoice
from conftest import make_plugin, registering
from tests.test_gaussian import small_model
from tests.test_gaussian_numpy import SETTINGS, request
from tests.test_gaussian_numpy import ToyHead as NumpyToyHead

TORCH = RuntimeChoice("torch", "cpu", "float32")


class ToyHead(NumpyToyHead):
    """The toy head built the way the engine builds heads: a model option and a runtime."""

    def __init__(self, model: str = "", runtime: RuntimeChoice | None = None) -> None:
        super().__init__(model, runtime)


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    save_continuous_model(directory, small_model(), "toy", SETTINGS)
    return str(directory)


def predictions(head, scale=1.0):
    state = head.initial_state(request(["bag", "top"], scale), np.random.default_rng(0))
    return head.denoise(state, 50.0, request(["bag", "top"], scale))


def test_the_torch_runtime_predicts_what_the_numpy_model_predicts(directory):
    numpy_head, torch_head = ToyHead(directory), ToyHead(directory, TORCH)
    assert isinstance(numpy_head.model, ArrayContinuousModel)
    assert isinstance(torch_head.model, RuntimeContinuousModel)
    want, got = predictions(numpy_head), predictions(torch_head)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (2, 5, 6)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(want).max() > 0.1  # random weights: agreement means something
    guided_want, guided_got = predictions(numpy_head, 3.0), predictions(torch_head, 3.0)
    assert isinstance(guided_got, Guided)
    np.testing.assert_allclose(guided_got.unconditional, guided_want.unconditional, atol=1e-5)
    assert torch_head.parameter_counts() == numpy_head.parameter_counts()


def test_the_network_runs_in_the_runtimes_dtype(directory):
    head = ToyHead(directory, RuntimeChoice("torch", "cpu", "bfloat16"))
    assert {p.dtype for p in head.model.network.parameters()} == {torch.bfloat16}
    got, want = predictions(head), predictions(ToyHead(directory))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=0.1 * np.abs(want).max())


def test_compile_prepares_the_network(directory):
    head = ToyHead(directory, RuntimeChoice("torch", "cpu", "float32", compile=True))
    assert head.model.network._compiled_call_impl is not None
    assert ToyHead(directory, TORCH).model.network._compiled_call_impl is None


def test_the_engine_runs_the_head_on_the_configured_runtime(directory):
    from aios_samplers.continuous import DDIM

    registry = aios.Registry()
    hooks = registering("aios_register_heads", ("toy", ToyHead, {"family": "continuous"})) | \
        registering("aios_register_samplers", ("ddim", DDIM, {"family": "continuous"}))
    registry.add_plugin(make_plugin(**hooks), name="toys", distribution="aios-toys", version="1")

    def engine(*overrides):
        config = load_config(overrides=[f"head.model={directory}", *overrides],
                             registry=registry)
        return ArrowEngine.from_config(config, registry=registry)

    on_numpy = engine("runtime.device=cpu")
    assert isinstance(on_numpy.head.model, ArrayContinuousModel)
    on_torch = engine("runtime.name=torch", "runtime.device=cpu", "runtime.dtype=float32")
    assert isinstance(on_torch.head.model, RuntimeContinuousModel)
    np.testing.assert_allclose(on_torch.diffuse("bag", num_steps=3, seed=1),
                               on_numpy.diffuse("bag", num_steps=3, seed=1), atol=1e-5)
