"""The masked samplers on torch tensors: the exact targets still hold, a seed gives the same
tokens as on NumPy, the logits cache stays on the logits' device, and per step only one token
and one confidence per masked position cross to the host."""

import numpy as np
import pytest
import torch
from aios_samplers import discrete
from aios_samplers.exact import MarkovChain
from test_discrete import DISCRETE, TV_BOUND, B, N, TableModel, build, draw_frequencies

from aios.protocols import Guided


def on_torch(denoise, dtype=torch.float32):
    """The same model, answering with torch tensors (as a model on the torch runtime does)."""
    def wrapped(state, t):
        out = denoise(state, t)
        if isinstance(out, Guided):
            return Guided(torch.as_tensor(out.conditional, dtype=dtype),
                          torch.as_tensor(out.unconditional, dtype=dtype), out.scale)
        return torch.as_tensor(np.asarray(out), dtype=dtype)
    return wrapped


def run_with(sampler, model, denoise, steps, seed=0):
    rng = np.random.default_rng(seed)
    return sampler.sample(denoise, model.initial_state(rng), num_steps=steps, rng=rng).tokens


@pytest.mark.parametrize("name", DISCRETE)
@pytest.mark.parametrize("options", [{}, {"temperature": 0.7, "top_p": 0.9}])
def test_a_seed_gives_the_same_tokens_on_numpy_and_torch(name, options):
    chain = MarkovChain.small(batch=300)
    steps = 8 if name != "semi-ar" else 4
    ours = run_with(build(name, **options), chain, on_torch(chain.denoise, torch.float64), steps)
    np.testing.assert_array_equal(ours, run_with(build(name, **options), chain, chain.denoise,
                                                 steps))


def test_mdlm_draws_the_exact_distribution_from_float32_torch_logits():
    chain = MarkovChain.small(batch=N)
    out = run_with(build("mdlm"), chain, on_torch(chain.denoise), 64)
    assert chain.total_variation(out) < TV_BOUND


@pytest.mark.parametrize("name", ["low-confidence", "threshold", "semi-ar", "block-threshold"])
def test_one_position_per_step_is_exact_on_torch(name):
    options = {"eos_guard": False,
               **({"threshold": 1.0} if name in ("threshold", "block-threshold") else {}),
               **({"block_length": 2} if name in ("semi-ar", "block-threshold") else {})}
    chain = MarkovChain.small(batch=N)
    out = run_with(build(name, **options), chain, on_torch(chain.denoise), chain.length)
    assert chain.total_variation(out) < TV_BOUND


def test_prompted_generation_is_exact_on_torch():
    chain = MarkovChain.small(batch=N, prompt=(B,))
    out = run_with(build("low-confidence", eos_guard=False), chain, on_torch(chain.denoise),
                   chain.length - 1)
    assert np.all(out[:, 0] == B) and chain.total_variation(out) < TV_BOUND


def test_temperature_and_top_p_hold_on_torch():
    model = TableModel([0.6, 0.3, 0.1])
    model.denoise = on_torch(model.denoise)
    np.testing.assert_allclose(draw_frequencies(build("mdlm", top_p=0.8), model),
                               [2 / 3, 1 / 3, 0.0], atol=0.01)
    np.testing.assert_allclose(draw_frequencies(build("mdlm", temperature=0.5), model),
                               np.array([0.36, 0.09, 0.01]) / 0.46, atol=0.01)


def test_the_logits_cache_lives_on_the_models_side(monkeypatch):
    seen = {}
    original = discrete.MaskedSampler._evaluate

    def spy(self, denoise, state, t, cache):
        out = original(self, denoise, state, t, cache)
        seen["cache"] = type(cache["logits"])
        return out

    monkeypatch.setattr(discrete.MaskedSampler, "_evaluate", spy)
    chain = MarkovChain.small(batch=50)
    run_with(build("mdlm-cache"), chain, on_torch(chain.denoise), 16)
    assert seen["cache"] is torch.Tensor


@pytest.mark.parametrize("name", DISCRETE)
def test_only_a_token_and_a_confidence_per_masked_position_reach_the_host(name, monkeypatch):
    moved = []
    real = discrete.to_host

    def spy(array):
        moved.append(tuple(array.shape))
        return real(array)

    monkeypatch.setattr(discrete, "to_host", spy)
    chain = MarkovChain.small(batch=40)
    masked = 40 * chain.length
    run_with(build(name), chain, on_torch(chain.denoise), 4 if name == "semi-ar" else 8)
    assert moved and all(len(shape) == 1 and shape[0] <= masked for shape in moved)


# -- continuous samplers -----------------------------------------------------------------------


def torch_mixture_run(name, mixture, steps, dtype):
    """The mixture's exact denoiser behind a torch boundary: the state arrives as a tensor,
    the prediction leaves as one, so every sampler operation runs on torch tensors."""
    from dataclasses import replace

    rng = np.random.default_rng(0)
    state = mixture.initial_state(rng)
    state = replace(state, x=torch.as_tensor(state.x, dtype=dtype))
    seen = []

    def denoise(s, t):
        seen.append(type(s.x))
        out = mixture.denoise(replace(s, x=s.x.double().numpy()), t)
        return torch.as_tensor(out, dtype=dtype)

    out = build_continuous(name).sample(denoise, state, num_steps=steps, rng=rng).x
    assert all(kind is torch.Tensor for kind in seen)
    return out


def build_continuous(name):
    from aios_samplers.plugin import SAMPLERS
    return SAMPLERS[name][0]()


def continuous_names():
    from aios_samplers.plugin import SAMPLERS
    return [n for n, (_, family) in SAMPLERS.items() if family == "continuous"]


@pytest.mark.parametrize("name", continuous_names())
def test_continuous_samplers_give_the_same_samples_on_torch(name):
    from aios_samplers.exact import GaussianMixture

    mixture = GaussianMixture.two_d(batch=64)
    ours = torch_mixture_run(name, mixture, 12, torch.float64)
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float64
    rng = np.random.default_rng(0)
    theirs = build_continuous(name).sample(mixture.denoise, mixture.initial_state(rng),
                                           num_steps=12, rng=rng).x
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["ddpm", "dpm-solver++", "unipc"])
def test_continuous_samplers_reach_the_exact_mixture_on_float32_torch(name):
    from aios_samplers.exact import GaussianMixture
    from test_continuous import ENOUGH_STEPS, assert_same_distribution

    mixture = GaussianMixture.one_d(batch=4000)
    out = torch_mixture_run(name, mixture, ENOUGH_STEPS[name], torch.float32)
    assert out.dtype == torch.float32
    assert_same_distribution(out.double().numpy(), mixture)
