import types

import aios_samplers
import numpy as np
import pytest
from aios_samplers import plugin
from aios_samplers.exact import GaussianMixture, MarkovChain

import aios
from aios.config import load_config
from aios.errors import ConfigError
from aios.hookspecs import CONTRACT_VERSION
from aios.protocols import Sampler
from aios.registry import Registry
from aios.testing import loaded_plugin

CONTINUOUS = ["ddpm", "ddim", "euler", "euler-ancestral", "heun", "dpm-solver++",
              "dpm-solver++-sde", "dpm-solver++-3m", "unipc"]
DISCRETE = ["mdlm", "mdlm-cache", "low-confidence", "threshold", "semi-ar", "remdm",
            "block-threshold"]


def samplers_only() -> Registry:
    registry = Registry()
    registry.add_plugin(plugin, name="samplers", distribution="aios-samplers",
                        version=aios_samplers.__version__)
    return registry


def test_the_pack_loads_through_its_entry_point_with_its_version():
    info = loaded_plugin("samplers")
    assert (info.distribution, info.version) == ("aios-samplers", aios_samplers.__version__)
    assert info.contract == CONTRACT_VERSION
    assert info.module == "aios_samplers.plugin"


def test_every_sampler_name_is_registered_under_its_family():
    registry = Registry.discover()
    assert registry.names("sampler", family="continuous") == sorted(CONTINUOUS)
    assert registry.names("sampler", family="discrete") == sorted(DISCRETE)


@pytest.mark.parametrize("name", CONTINUOUS + DISCRETE)
def test_every_factory_builds_a_sampler_of_its_family_with_defaults(name):
    factory, family = plugin.SAMPLERS[name]
    sampler = factory()
    assert isinstance(sampler, Sampler)
    assert sampler.family == family


def test_auto_picks_dpm_solver_for_continuous_and_low_confidence_for_discrete():
    registry = Registry.discover()
    assert registry.best("sampler", family="continuous").name == "dpm-solver++"
    assert registry.best("sampler", family="discrete").name == "low-confidence"


@pytest.mark.parametrize(("text", "options"), [
    ("sampler: {name: ddim, steps: 20, eta: 0.0}", {"eta": 0.0}),
    ("sampler: {name: dpm-solver++, steps: 12, spacing: karras}", {"spacing": "karras"}),
    ("sampler: {name: semi-ar, steps: 8, block_length: 4, temperature: 0.7}",
     {"block_length": 4, "temperature": 0.7}),
    ("sampler: {name: threshold, steps: 8, threshold: 0.8, top_p: 0.9, schedule: cosine}",
     {"threshold": 0.8, "top_p": 0.9, "schedule": "cosine"}),
    ("sampler: {name: mdlm, steps: 8, schedule: [1.0, 0.3, 0.0]}",
     {"schedule": [1.0, 0.3, 0.0]}),
])
def test_a_sampler_config_round_trips_through_yaml(tmp_path, text, options):
    registry = samplers_only()  # no installed head decides the family for `auto`
    path = tmp_path / "a.yaml"
    path.write_text(text + "\n")
    config = load_config(path, registry=registry)
    assert dict(config.sampler.options) == options
    again = tmp_path / "b.yaml"
    again.write_text(config.to_yaml())
    assert load_config(again, registry=registry) == config
    name = config.sampler.name
    assert plugin.SAMPLERS[name][0](**config.sampler.options).family == \
        plugin.SAMPLERS[name][1]


def test_an_option_of_the_wrong_type_is_a_config_error(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("sampler: {name: ddim, eta: fast}\n")
    with pytest.raises(ConfigError, match="sampler.eta: expected float"):
        load_config(path, registry=samplers_only())


def test_a_misspelt_option_is_a_config_error_that_suggests_the_right_one(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("sampler: {name: semi-ar, block_len: 4}\n")
    with pytest.raises(ConfigError, match="block_length"):
        load_config(path, registry=samplers_only())


class MixtureHead:
    """The exact 1-D mixture as an engine head (the contract a real image head implements)."""

    modality, family = "toy-continuous", "continuous"

    def __init__(self, batch: int = 2000) -> None:
        self.mixture = GaussianMixture.one_d(batch=batch)

    def initial_state(self, request, rng):
        return self.mixture.initial_state(rng)

    def denoise(self, state, t, request):
        return self.mixture.denoise(state, t)

    def decode(self, state, request):
        return state.x


class ChainHead:
    """The exact Markov chain as an engine head (the contract the text head implements)."""

    modality, family = "toy-discrete", "discrete"

    def __init__(self, batch: int = 2000) -> None:
        self.chain = MarkovChain.small(batch=batch)

    def initial_state(self, request, rng):
        return self.chain.initial_state(rng)

    def denoise(self, state, t, request):
        return self.chain.denoise(state, t)

    def decode(self, state, request):
        return state.tokens


def engine_registry(head_name, head):
    def register_heads(register):
        register(head_name, head, family=head.family)

    module = types.ModuleType("toy_heads")
    module.AIOS_CONTRACT_VERSION = "1.0"
    module.aios_register_heads = aios.hookimpl(register_heads)
    registry = Registry()
    registry.add_plugin(module, name="toy-heads", distribution="toy", version="0")
    registry.add_plugin(plugin, name="samplers", distribution="aios-samplers", version="0")
    assert not registry.failures, registry.failures
    return registry


def test_the_engine_runs_a_continuous_sampler_chosen_by_name(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("head: {name: mixture}\nsampler: {name: dpm-solver++, steps: 25}\n")
    engine = aios.ArrowEngine.from_config(path, registry=engine_registry("mixture", MixtureHead))
    steps = []
    x = engine.diffuse(None, seed=0, callback=lambda i, n, s: steps.append(i))
    assert steps == list(range(25))
    assert engine.head.mixture.wasserstein(x) < 0.05


def test_the_engine_runs_a_discrete_sampler_chosen_by_auto(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("head: {name: chain}\nsampler: {name: auto, steps: 4}\n")
    engine = aios.ArrowEngine.from_config(path, registry=engine_registry("chain", ChainHead))
    assert engine.config.sampler.name == "low-confidence"
    tokens = engine.diffuse(None, seed=0)
    assert tokens.shape == (2000, 4) and np.all(tokens != engine.head.chain.mask_id)
