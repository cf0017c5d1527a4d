"""The `runtime:` section reaches the heads: resolved once per head for what its factory
declares it runs (`runtimes`), handed to factories with a `runtime` parameter, refused when
the model cannot honour it, and shown by `aios config show` for the configured head."""

import json

import pytest

import aios
from aios import cli
from aios.config import load_config
from aios.engine import ArrowEngine, head_runtime, head_runtimes, takes_runtime
from aios.errors import ConfigError, PluginError
from aios.runtime import RuntimeChoice
from conftest import FAKE_CPU as CPU
from conftest import FAKE_GPU as GPU
from conftest import HalfwaySampler, NoisyHead, make_plugin, registering


class PlacedHead(NoisyHead):
    """A head that runs in torch or numpy and records the runtime the engine gave it."""

    modality = "placed"

    def __init__(self, size: int = 4, runtime: RuntimeChoice | None = None) -> None:
        super().__init__(size)
        self.runtime = runtime


class TorchOnlyHead(PlacedHead):
    modality = "big"
    runtimes = ("torch",)


class NumpyOnlyHead(NoisyHead):
    """Declares numpy only and takes no runtime: the engine still refuses torch for it."""

    modality = "small"
    runtimes = ("numpy",)


def choosing_head(size: int = 4, flavour: str = "numpy",
                  runtime: RuntimeChoice | None = None) -> PlacedHead:
    return PlacedHead(size, runtime)


choosing_head.modality = "chosen"  # type: ignore[attr-defined]
choosing_head.runtimes = lambda options: (options.get("flavour", "numpy"),)  # type: ignore


def broken_declaration(size: int = 4) -> NoisyHead:
    return NoisyHead(size)


broken_declaration.runtimes = ("jax",)  # type: ignore[attr-defined]


@pytest.fixture
def registry():
    registry = aios.Registry()
    hooks = registering(
        "aios_register_heads",
        ("placed", PlacedHead, {"family": "continuous", "priority": 5}),
        ("big", TorchOnlyHead, {"family": "continuous"}),
        ("small", NumpyOnlyHead, {"family": "continuous"}),
        ("chosen", choosing_head, {"family": "continuous"}),
        ("plain", NoisyHead, {"family": "continuous"}),
        ("broken", broken_declaration, {"family": "continuous"}),
    ) | registering("aios_register_samplers",
                    ("halfway", HalfwaySampler, {"family": "continuous"}))
    registry.add_plugin(make_plugin(**hooks), name="toys", distribution="aios-toys",
                        version="1")
    assert not registry.failures, registry.failures
    return registry


@pytest.fixture
def devices(fake_devices):
    fake_devices(CPU)
    return fake_devices


def engine(registry, *overrides):
    return ArrowEngine.from_config(load_config(overrides=overrides, registry=registry),
                                   registry=registry)


def test_a_factory_with_a_runtime_parameter_receives_the_resolved_runtime(registry, devices):
    e = engine(registry, "head.name=placed", "runtime.name=torch", "runtime.dtype=bfloat16")
    assert e.head.runtime == RuntimeChoice("torch", "cpu", "bfloat16",
                                           {"device": "auto -> cpu: no GPU found"})
    assert e.runtimes["placed"] is e.head.runtime
    e.diffuse("p", num_steps=2)  # and it still generates


def test_a_factory_without_one_is_built_as_before(registry, devices):
    e = engine(registry, "head.name=plain", "runtime.name=torch")
    assert type(e.head) is NoisyHead and e.runtimes["toy"].name == "torch"
    assert not takes_runtime(NoisyHead) and takes_runtime(PlacedHead)


def test_auto_follows_what_the_head_declares_it_runs(registry, devices):
    devices(CPU, GPU)
    assert engine(registry, "head.name=big").head.runtime.device == "cuda:0"
    assert engine(registry, "head.name=small").runtimes["small"].device == "cpu"
    devices(CPU)
    big = engine(registry, "head.name=big").head.runtime
    assert (big.name, big.reasons["name"]) == ("torch",
                                               "auto -> torch: head 'big' runs in torch only")
    undeclared = engine(registry, "head.name=placed").head.runtime
    assert undeclared.name == "numpy"  # as before: numpy for a model on the CPU


def test_a_declaration_may_depend_on_the_head_options(registry, devices):
    assert engine(registry, "head.name=chosen").head.runtime.name == "numpy"
    assert engine(registry, "head.name=chosen", "head.flavour=torch").head.runtime.name == \
        "torch"
    with pytest.raises(ConfigError, match="runtime.name: head 'chosen' runs in torch only"):
        engine(registry, "head.name=chosen", "head.flavour=torch", "runtime.name=numpy")


def test_an_explicit_setting_the_head_cannot_honour_is_refused(registry, devices):
    with pytest.raises(ConfigError, match=r"--set: runtime.name: head 'small' runs in numpy "
                                          r"only, not in torch; set runtime.name: numpy"):
        engine(registry, "head.name=small", "runtime.name=torch")
    with pytest.raises(ConfigError, match="runtime.dtype: the numpy runtime computes in "
                                          "float32, not float16"):
        engine(registry, "head.name=small", "runtime.dtype=float16")


def test_a_head_of_another_modality_gets_its_own_resolution(registry, devices):
    e = engine(registry, "head.name=big")
    assert e.runtimes == {"big": e.head.runtime}
    small = e.head_for("small")
    assert isinstance(small, NumpyOnlyHead) and e.runtimes["small"].name == "numpy"
    assert e.runtimes["big"].name == "torch"


def test_a_wrong_declaration_is_blamed_on_its_package(registry, devices):
    with pytest.raises(PluginError, match=r"head 'broken' from package aios-toys 1 raised "
                                          r"TypeError: the head factory declares runtimes "
                                          r"\('jax',\)"):
        engine(registry, "head.name=broken")
    assert head_runtimes(NoisyHead, {}) == ("numpy", "torch")


def test_the_runtime_is_not_a_head_option(registry):
    with pytest.raises(ConfigError, match=r"--set: head.runtime: the runtime is not a head "
                                          r"option; set it in the `runtime:` section"):
        load_config(overrides=["head.name=placed", "head.runtime=torch"], registry=registry)


def test_head_runtime_resolves_without_building(registry, devices):
    config = load_config(overrides=["head.name=big"], registry=registry)
    choice = head_runtime(registry, config, "big", {})
    assert (choice.name, choice.device, choice.dtype) == ("torch", "cpu", "float32")


def test_config_show_reports_the_runtime_of_the_configured_head(capsys, monkeypatch):
    monkeypatch.setenv("AIOS_TEXT_MODEL", "tiny")
    assert cli.main(["--set", "head.model=tiny", "config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["runtime"]["name"] == "numpy"
    assert shown["origins"]["runtime.name"] == ("auto -> numpy: head 'text' with model 'tiny' "
                                                "runs in numpy only")
    assert cli.main(["--set", "head.model=tiny", "--set", "runtime.name=torch", "config",
                     "show"]) == 2
    assert "runtime.name: head 'text' with model 'tiny' runs in numpy only, not in torch" in \
        capsys.readouterr().err


def test_a_half_precision_dtype_takes_every_head_that_can_to_torch(registry, devices):
    e = engine(registry, "head.name=big", "runtime.dtype=bfloat16")
    assert e.head.runtime.dtype == "bfloat16"
    other = e.head_for("placed")  # runs numpy or torch: bfloat16 takes it to torch
    assert (other.runtime.name, other.runtime.dtype) == ("torch", "bfloat16")
    with pytest.raises(ConfigError, match="computes in float32, not bfloat16"):
        e.head_for("small")  # numpy only: the explicit dtype is refused, not ignored
