import numpy as np
import pytest

import aios
from aios.config import load_config
from aios.engine import ArrowEngine
from aios.errors import AiosError, ConfigError, PluginError, PluginNotFoundError, blamed
from aios.protocols import Conditioner, Head, Sampler
from conftest import HalfwaySampler, NoisyHead, make_plugin, registering


def engine(registry, *overrides):
    return ArrowEngine.from_config(load_config(overrides=overrides, registry=registry),
                                   registry=registry)


def test_the_engine_builds_the_configured_plugins_with_their_options(toys):
    e = engine(toys, "head.size=3", "sampler.fraction=0.25", "conditioners.0=tag")
    assert isinstance(e.head, Head) and isinstance(e.sampler, Sampler)
    assert isinstance(e.conditioners[0], Conditioner)
    assert e.head.size == 3 and e.sampler.fraction == 0.25
    assert e.storage is None


def test_diffuse_runs_head_sampler_and_head_with_the_requested_steps(toys):
    e = engine(toys, "sampler.steps=4")
    seen = []
    out = e.diffuse("p", seed=1, callback=lambda i, n, s: seen.append((i, n)))
    start = np.random.default_rng(1).normal(size=4)
    # each step halves the distance to the prediction 2.0
    np.testing.assert_allclose(out["state"], 2.0 + (start - 2.0) * 0.5**4)
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert out["request"].num_steps == 4


def test_arguments_of_diffuse_override_the_config_defaults(toys):
    e = engine(toys, "generate.guidance_scale=2.5", "generate.seed=7")
    request = e.diffuse("p")["request"]
    assert (request.guidance_scale, request.seed, request.modality) == (2.5, 7, "toy")
    request = e.diffuse("p", guidance_scale=4.0, seed=8, num_steps=2, temperature=0.7)["request"]
    assert (request.guidance_scale, request.seed, request.num_steps) == (4.0, 8, 2)
    assert request.options == {"temperature": 0.7}


def test_a_seed_reproduces_the_output_and_another_seed_changes_it(toys):
    e = engine(toys)
    a, b, c = (e.diffuse("p", seed=s, num_steps=1)["state"] for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_conditioners_run_in_config_order_on_an_immutable_request(toys):
    e = engine(toys, "conditioners.0.name=tag", "conditioners.0.tag=first",
               "conditioners.1.name=tag", "conditioners.1.tag=second")
    assert e.diffuse("p")["request"].context == ("first", "second")


def test_a_modality_the_head_does_not_produce_is_refused_with_the_fix(toys):
    with pytest.raises(AiosError, match="modality 'image' was requested but the configured head "
                                        "'noisy' generates 'toy'; install the pack for 'image'"):
        engine(toys).diffuse("p", modality="image")


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_a_step_count_that_is_not_a_positive_integer_is_refused(toys, steps):
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        engine(toys).diffuse("p", num_steps=steps)


def test_with_no_head_installed_the_error_says_which_pack_to_install():
    with pytest.raises(PluginNotFoundError, match="no head plugin is installed. Install a modality "
                                                  "pack: `pip install aios-text`"):
        ArrowEngine.from_config(registry=aios.Registry())


def test_a_head_and_sampler_of_different_families_are_refused(toys):
    config = load_config(overrides=["sampler.steps=2"], registry=toys)
    head = toys.get("head", "noisy").factory()
    sampler = toys.get("sampler", "still").factory()
    with pytest.raises(ConfigError, match="sampler 'halfway' is discrete but head 'noisy' is "
                                          "continuous; choose a continuous sampler"):
        ArrowEngine(config, head, sampler)


def test_a_factory_that_raises_is_reported_with_its_package():
    registry = aios.Registry()

    def broken_head():
        raise OSError("weights missing")

    hooks = registering("aios_register_heads", ("broken", broken_head, {"family": "continuous"}))
    registry.add_plugin(make_plugin(**hooks), name="b", distribution="b-dist", version="0.2")
    with pytest.raises(AiosError, match="head 'broken' from package b-dist 0.2 raised "
                                        "OSError: weights missing"):
        ArrowEngine.from_config(registry=registry)


def test_a_configured_memory_path_opens_the_storage_backend_and_close_releases_it(tmp_path):
    opened = []

    class Store:
        def __init__(self, path: str, dim: int = 8):
            self.path, self.dim, self.closed = path, dim, False
            opened.append(self)

        def close(self):
            self.closed = True

    registry = aios.Registry()
    hooks = registering("aios_register_heads", ("noisy", NoisyHead, {"family": "continuous"}))
    hooks |= registering("aios_register_samplers", ("s", _Continuous, {"family": "continuous"}))
    hooks |= registering("aios_register_storage", ("mem", Store, {}))
    registry.add_plugin(make_plugin(**hooks), name="p", distribution="d", version="1")
    config = load_config(overrides=[f"memory.path={tmp_path}", "memory.dim=4"], registry=registry)
    with ArrowEngine.from_config(config, registry=registry) as e:
        assert e.storage.path == str(tmp_path) and e.storage.dim == 4
    assert opened[0].closed


class _Continuous:
    family = "continuous"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        return denoise(state, 0)


class _FailingSampler:
    """A continuous sampler that fails on its second step."""

    family = "continuous"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        denoise(state, 0)
        raise RuntimeError("step 2 diverged")


class _FailingHead(NoisyHead):
    def denoise(self, state, t, request):
        raise ValueError("bad tensor")


class _ExitingHead(NoisyHead):
    def decode(self, state, request):
        raise SystemExit(4)


def _engine_with(kind_hook, name, factory, family="continuous"):
    registry = aios.Registry()
    plugin = registering("aios_register_heads", ("noisy", NoisyHead, {"family": "continuous"}))
    plugin |= registering("aios_register_samplers",
                          ("plain", HalfwaySampler, {"family": "continuous"}))
    registry.add_plugin(make_plugin(**plugin), name="toys", distribution="aios", version="1")
    extra = registering(kind_hook, (name, factory, {"family": family}))
    registry.add_plugin(make_plugin(**extra), name="third", distribution="third-dist",
                        version="2.5")
    kind = "head" if kind_hook == "aios_register_heads" else "sampler"
    config = load_config(overrides=[f"{kind}.name={name}"], registry=registry)
    return ArrowEngine.from_config(config, registry=registry)


@pytest.mark.parametrize(("kind_hook", "name", "factory", "message", "raised"), [
    ("aios_register_samplers", "boom", _FailingSampler,
     "sampler 'boom' from package third-dist 2.5 raised RuntimeError: step 2 diverged",
     RuntimeError),
    ("aios_register_heads", "fails", _FailingHead,
     "head 'fails' from package third-dist 2.5 raised ValueError: bad tensor", ValueError),
    ("aios_register_heads", "exits", _ExitingHead,
     "head 'exits' from package third-dist 2.5 raised SystemExit: 4", PluginError),
])
def test_a_plugin_raising_during_generation_is_named_with_its_package(kind_hook, name, factory,
                                                                      message, raised):
    engine = _engine_with(kind_hook, name, factory)
    with pytest.raises(raised) as caught:  # the type is kept for Python callers
        engine.diffuse("x", num_steps=2)
    reported = caught.value if raised is PluginError else blamed(caught.value)
    assert str(reported) == message
    assert reported.exit_code == 1
    if raised is PluginError:
        assert isinstance(caught.value.__cause__, SystemExit)


def test_the_head_is_blamed_for_its_own_error_inside_a_sampler_loop():
    engine = _engine_with("aios_register_heads", "fails", _FailingHead)
    with pytest.raises(ValueError) as caught:
        engine.diffuse("x", num_steps=3)
    assert str(blamed(caught.value)).startswith("head 'fails'")


def test_an_error_of_the_core_is_blamed_on_no_plugin():
    assert blamed(ValueError("x")) is None
