"""Continuous samplers against a Gaussian mixture, whose optimal denoiser is exact."""

import math
from dataclasses import replace

import numpy as np
import pytest
from aios_samplers import continuous
from aios_samplers.exact import GaussianMixture
from aios_samplers.plugin import SAMPLERS

from aios.protocols import GaussianState, Guided, MaskedState
from aios.schedules import NoiseSchedule

CONTINUOUS = [name for name, (_, family) in SAMPLERS.items() if family == "continuous"]
STOCHASTIC = {"ddpm", "euler-ancestral", "dpm-solver++-sde"}
#: Steps at which each sampler's discretisation error is far below the test's tolerances.
ENOUGH_STEPS = {"ddpm": 300, "ddim": 100, "euler": 100, "euler-ancestral": 300, "heun": 25,
                "dpm-solver++": 30, "dpm-solver++-sde": 60, "dpm-solver++-3m": 30,
                "unipc": 30}
N = 4000


def build(name, **options):
    return SAMPLERS[name][0](**options)


def run(sampler, mixture, steps, seed=0, callback=None):
    rng = np.random.default_rng(seed)
    state = mixture.initial_state(rng)
    return sampler.sample(mixture.denoise, state, num_steps=steps, rng=rng, callback=callback).x


def ks_statistic(a, b):
    """The two-sample Kolmogorov-Smirnov statistic of 1-D samples."""
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / a.size
    fb = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return np.abs(fa - fb).max()


def assert_same_distribution(samples, mixture, seed=123):
    """Two-sample KS along several directions, then weights, means and variances per component."""
    exact = mixture.sample(len(samples), np.random.default_rng(seed))
    directions = [np.array([1.0])] if mixture.dim == 1 else \
        [np.array([math.cos(a), math.sin(a)]) for a in np.linspace(0, math.pi, 4, endpoint=False)]
    alpha = 1e-3 / len(directions)
    critical = math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt(2 / len(samples))
    for d in directions:
        assert ks_statistic(samples @ d, exact @ d) < critical, f"KS along {d}"
    ours, theirs = mixture.classify(samples), mixture.classify(exact)
    for k, weight in enumerate(mixture.weights):
        assert np.mean(ours == k) == pytest.approx(weight, abs=0.03)
        a, b = samples[ours == k], exact[theirs == k]
        np.testing.assert_allclose(a.mean(axis=0), b.mean(axis=0), atol=0.06)
        np.testing.assert_allclose(a.var(axis=0), b.var(axis=0), rtol=0.15)


@pytest.fixture(scope="module")
def mixture_1d():
    return GaussianMixture.one_d(batch=N)


@pytest.fixture(scope="module")
def mixture_2d():
    return GaussianMixture.two_d(batch=N)


# -- correctness against the exact target ------------------------------------------------------


@pytest.mark.parametrize("name", CONTINUOUS)
def test_sampler_reproduces_the_1d_mixture(name, mixture_1d):
    assert_same_distribution(run(build(name), mixture_1d, ENOUGH_STEPS[name]), mixture_1d)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_sampler_reproduces_the_2d_mixture(name, mixture_2d):
    assert_same_distribution(run(build(name), mixture_2d, ENOUGH_STEPS[name]), mixture_2d)


def test_the_distribution_check_rejects_a_coarse_sampler(mixture_1d):
    with pytest.raises(AssertionError):
        assert_same_distribution(run(build("ddim"), mixture_1d, 3), mixture_1d)


def transport_error(name, mixture, steps):
    """Mean distance to the exact probability-flow ODE end point of each starting point."""
    sampler = build(name)
    rng = np.random.default_rng(0)
    state = mixture.initial_state(rng)
    out = sampler.sample(mixture.denoise, state, num_steps=steps, rng=rng).x
    exact = mixture.ode_endpoint(state.x[:, 0], sampler.timesteps[0])
    return float(np.abs(out[:, 0] - exact).mean())


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("name", ["heun", "dpm-solver++", "dpm-solver++-3m", "unipc"])
def test_higher_order_solvers_beat_ddim_at_the_same_steps(name, steps):
    mixture = GaussianMixture.one_d(batch=1000)
    assert transport_error(name, mixture, steps) < 0.7 * transport_error("ddim", mixture, steps)


@pytest.mark.parametrize("name", ["ddim", "heun", "dpm-solver++", "dpm-solver++-3m", "unipc"])
def test_ode_error_shrinks_as_steps_grow(name):
    mixture = GaussianMixture.one_d(batch=1000)
    errors = [transport_error(name, mixture, steps) for steps in (10, 20, 40)]
    assert errors[0] > errors[1] > errors[2]


def test_ddim_eta_zero_is_deterministic_given_the_same_noise(mixture_1d):
    state = mixture_1d.initial_state(np.random.default_rng(0))
    first = build("ddim").sample(mixture_1d.denoise, state, num_steps=10,
                                 rng=np.random.default_rng(1)).x
    second = build("ddim").sample(mixture_1d.denoise, state, num_steps=10,
                                  rng=np.random.default_rng(2)).x
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", [*sorted(STOCHASTIC), "ddim-eta"])
def test_stochastic_samplers_depend_on_the_random_stream(name, mixture_1d):
    sampler = build("ddim", eta=0.5) if name == "ddim-eta" else build(name)
    state = mixture_1d.initial_state(np.random.default_rng(0))
    a = sampler.sample(mixture_1d.denoise, state, num_steps=8, rng=np.random.default_rng(1)).x
    b = sampler.sample(mixture_1d.denoise, state, num_steps=8, rng=np.random.default_rng(2)).x
    assert not np.allclose(a, b)


def test_euler_ancestral_with_eta_one_is_ddpm_on_the_same_grid(mixture_1d):
    # k-diffusion's ancestral step draws from the same Gaussian as DDPM's posterior.
    np.testing.assert_allclose(run(build("euler-ancestral"), mixture_1d, 12),
                               run(build("ddpm"), mixture_1d, 12), atol=1e-10)


def test_higher_order_unipc_converges_faster():
    mixture = GaussianMixture.one_d(batch=1000)
    assert transport_error("unipc", mixture, 40) < 0.5 * transport_error("dpm-solver++", mixture,
                                                                          40)


def test_ddim_with_eta_one_is_ddpm(mixture_1d):
    np.testing.assert_allclose(run(build("ddim", eta=1.0), mixture_1d, 12),
                               run(build("ddpm"), mixture_1d, 12), atol=1e-10)


@pytest.mark.parametrize("spacing", continuous.CONTINUOUS_SPACINGS)
def test_euler_is_ddim_eta_zero_on_the_same_grid(spacing, mixture_1d):
    np.testing.assert_allclose(run(build("euler", spacing=spacing), mixture_1d, 7),
                               run(build("ddim", spacing=spacing), mixture_1d, 7), atol=1e-10)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_epsilon_x0_and_v_models_give_the_same_samples(name):
    outputs = [run(build(name), GaussianMixture.one_d(batch=200, prediction=p), 6)
               for p in ("epsilon", "x0", "v")]
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-8)
    np.testing.assert_allclose(outputs[2], outputs[0], atol=1e-8)


# -- the step-level interface ------------------------------------------------------------------


@pytest.mark.parametrize("name", CONTINUOUS)
def test_sample_is_set_timesteps_then_one_step_per_evaluation(name, mixture_1d):
    sampler = build(name)
    expected = run(sampler, mixture_1d, 5, seed=3)
    rng = np.random.default_rng(3)
    state = mixture_1d.initial_state(rng)
    stepper = build(name)
    stepper.set_timesteps(5, state.schedule, state.prediction)
    x = state.x
    for index, t in enumerate(stepper.timesteps):
        x = stepper.step(mixture_1d.denoise(replace(state, x=x), t), index, x, rng)
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_evaluations_are_one_per_step_except_heun(name):
    mixture = GaussianMixture.one_d(batch=10)
    sampler = build(name)
    run(sampler, mixture, 6)
    expected = 11 if name == "heun" else 6
    assert sampler.evaluations == mixture.calls[0] == expected


@pytest.mark.parametrize("name", CONTINUOUS)
def test_callback_reports_every_step_once(name):
    seen = []
    run(build(name), GaussianMixture.one_d(batch=10), 5,
        callback=lambda i, n, s: seen.append((i, n, s.x.shape)))
    assert seen == [(i, 5, (10, 1)) for i in range(5)]


def test_the_first_evaluation_is_at_the_last_training_timestep():
    sampler = build("dpm-solver++")
    sampler.set_timesteps(10, NoiseSchedule.linear())
    assert sampler.timesteps[0] == pytest.approx(999)
    assert np.all(np.diff(sampler.timesteps) < 0)


def test_a_float32_state_comes_back_float32():
    mixture = GaussianMixture.one_d(batch=10)
    state = mixture.initial_state(np.random.default_rng(0))
    state = replace(state, x=state.x.astype(np.float32))
    out = build("ddim").sample(mixture.denoise, state, num_steps=3,
                               rng=np.random.default_rng(0))
    assert out.x.dtype == np.float32


def test_torch_predictions_are_accepted(mixture_1d):
    import torch

    state = mixture_1d.initial_state(np.random.default_rng(0))
    a = build("unipc").sample(lambda s, t: torch.from_numpy(mixture_1d.denoise(s, t)), state,
                              num_steps=6, rng=None).x
    b = build("unipc").sample(mixture_1d.denoise, state, num_steps=6, rng=None).x
    np.testing.assert_array_equal(a, b)


# -- classifier-free guidance ------------------------------------------------------------------


def test_guided_output_is_combined_as_unconditional_plus_scale_times_difference():
    conditional = GaussianMixture.one_d(batch=300)
    unconditional = GaussianMixture([1.0], [0.0], [1.0], batch=300)
    scale = 2.5

    def guided(state, t):
        return Guided(conditional.denoise(state, t), unconditional.denoise(state, t), scale)

    def combined(state, t):
        c, u = conditional.denoise(state, t), unconditional.denoise(state, t)
        return u + scale * (c - u)

    state = conditional.initial_state(np.random.default_rng(0))
    outs = [build("dpm-solver++").sample(f, state, num_steps=8, rng=np.random.default_rng(0)).x
            for f in (guided, combined)]
    np.testing.assert_allclose(outs[0], outs[1])


def test_guidance_scale_one_is_the_conditional_model(mixture_1d):
    state = mixture_1d.initial_state(np.random.default_rng(0))

    def guided(s, t):
        return Guided(mixture_1d.denoise(s, t), np.zeros_like(s.x), 1.0)

    a = build("ddim").sample(guided, state, num_steps=8, rng=None).x
    b = build("ddim").sample(mixture_1d.denoise, state, num_steps=8, rng=None).x
    np.testing.assert_allclose(a, b)


# -- bad input ---------------------------------------------------------------------------------


def test_a_masked_state_is_refused_with_the_fix():
    state = MaskedState(np.zeros((1, 3), dtype=np.int64), mask_id=0)
    with pytest.raises(TypeError, match="GaussianState"):
        build("ddim").sample(lambda s, t: s, state, num_steps=2, rng=None)


def test_a_prediction_of_the_wrong_shape_is_refused(mixture_1d):
    state = mixture_1d.initial_state(np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        build("ddim").sample(lambda s, t: s.x[:5], state, num_steps=2, rng=None)


def test_nan_predictions_are_refused(mixture_1d):
    state = mixture_1d.initial_state(np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        build("ddim").sample(lambda s, t: s.x * np.nan, state, num_steps=2, rng=None)


def test_integer_predictions_are_refused(mixture_1d):
    state = mixture_1d.initial_state(np.random.default_rng(0))
    with pytest.raises(TypeError, match="float"):
        build("ddim").sample(lambda s, t: np.zeros(s.x.shape, dtype=int), state, num_steps=2,
                             rng=None)


def test_a_stochastic_sampler_without_rng_says_to_pass_one(mixture_1d):
    state = mixture_1d.initial_state(np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng"):
        build("ddpm").sample(mixture_1d.denoise, state, num_steps=3, rng=None)


@pytest.mark.parametrize(("name", "options", "problem"), [
    ("ddim", {"spacing": "uniform"}, "unknown spacing"),
    ("ddim", {"eta": -1.0}, "eta"),
    ("euler-ancestral", {"eta": -0.1}, "eta"),
])
def test_bad_options_are_refused_with_the_reason(name, options, problem):
    with pytest.raises(ValueError, match=problem):
        build(name, **options)


def test_an_unknown_prediction_type_is_refused():
    with pytest.raises(ValueError, match="epsilon, x0, v"):
        GaussianState(np.zeros(3), NoiseSchedule.linear(), prediction="score")


def test_zero_steps_are_refused(mixture_1d):
    state = mixture_1d.initial_state(np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive integer"):
        build("heun").sample(mixture_1d.denoise, state, num_steps=0, rng=None)
