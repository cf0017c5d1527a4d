import math

import numpy as np
import pytest

from aios.schedules import (
    MASKING_SCHEDULES,
    NoiseSchedule,
    cosine_betas,
    karras_sigmas,
    linear_betas,
    masking_schedule,
    schedule_from_config,
    vp_from_ve,
)


def half_signal(u):
    """A custom alpha_bar for the `module:function` config form."""
    return 0.999 * np.exp(-8.0 * np.asarray(u))


# -- beta schedules ----------------------------------------------------------------------------


def test_linear_betas_run_evenly_from_start_to_end():
    betas = linear_betas(1000, 1e-4, 0.02)
    assert betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999)


def test_cosine_betas_give_the_squared_cosine_alpha_bar():
    n, s = 1000, 0.008
    alphas_cumprod = np.cumprod(1 - cosine_betas(n, s))
    u = np.arange(1, n + 1) / n
    expected = (np.cos((u + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)) ** 2
    np.testing.assert_allclose(alphas_cumprod[:-50], expected[:-50], rtol=1e-9)


def test_cosine_betas_are_clipped_at_max_beta():
    assert cosine_betas(1000, max_beta=0.5).max() == pytest.approx(0.5)


def test_karras_sigmas_span_sigma_max_to_sigma_min_with_the_rho_ramp():
    sigmas = karras_sigmas(5)
    assert sigmas[0] == pytest.approx(80.0) and sigmas[-1] == pytest.approx(0.002)
    assert np.all(np.diff(sigmas) < 0)
    middle = (80.0 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert sigmas[2] == pytest.approx(middle)


def test_karras_sigmas_refuse_an_empty_range():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        karras_sigmas(10, sigma_min=1.0, sigma_max=1.0)


# -- NoiseSchedule -----------------------------------------------------------------------------


def test_vp_coefficients_preserve_variance_and_match_alphas_cumprod():
    schedule = NoiseSchedule.linear()
    t = np.arange(1000)
    alpha, sigma = schedule.alpha_sigma(t)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0)
    np.testing.assert_allclose(alpha**2, schedule.alphas_cumprod, rtol=1e-12)


def test_ve_sigma_is_sigma_over_alpha():
    schedule = NoiseSchedule.cosine()
    t = np.array([0.0, 10.0, 500.0, 999.0])
    alpha, sigma = schedule.alpha_sigma(t)
    np.testing.assert_allclose(schedule.ve_sigma(t), sigma / alpha)
    assert schedule.sigma_max == pytest.approx(float(schedule.ve_sigma(999)))


def test_sigma_to_t_inverts_ve_sigma_at_fractional_timesteps():
    schedule = NoiseSchedule.linear()
    t = np.array([0.0, 0.25, 17.5, 640.125, 999.0])
    np.testing.assert_allclose(schedule.sigma_to_t(schedule.ve_sigma(t)), t, atol=1e-9)


def test_from_sigmas_builds_the_ve_schedule_it_was_given():
    sigmas = karras_sigmas(50)[::-1]
    schedule = NoiseSchedule.from_sigmas(sigmas)
    np.testing.assert_allclose(schedule.ve_sigma(np.arange(50)), sigmas, rtol=1e-10)


def test_vp_from_ve_is_the_unit_variance_pair():
    alpha, sigma = vp_from_ve(np.array([0.0, 1.0, 80.0]))
    np.testing.assert_allclose(alpha, [1.0, 1 / math.sqrt(2), 1 / math.sqrt(6401)])
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0)


@pytest.mark.parametrize(("spacing", "expected"), [
    ("leading", [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]),
    ("trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]),
    ("linspace", [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]),
])
def test_timestep_spacings_follow_their_rule(spacing, expected):
    np.testing.assert_array_equal(NoiseSchedule.linear().timesteps(10, spacing), expected)


def test_logsnr_timesteps_are_even_in_log_sigma_over_the_whole_range():
    schedule = NoiseSchedule.linear()
    t = schedule.logsnr_timesteps(6)
    log_sigma = np.log(schedule.ve_sigma(t))
    np.testing.assert_allclose(np.diff(log_sigma), np.diff(log_sigma)[0], rtol=1e-9)
    assert t[0] == pytest.approx(999) and t[-1] == pytest.approx(0, abs=1e-9)


def test_karras_timesteps_use_the_schedules_own_noise_range():
    schedule = NoiseSchedule.linear()
    sigmas = schedule.ve_sigma(schedule.karras_timesteps(8))
    np.testing.assert_allclose(sigmas, karras_sigmas(8, schedule.sigma_min, schedule.sigma_max))


def test_unknown_spacing_names_the_choices():
    with pytest.raises(ValueError, match="leading, trailing, linspace"):
        NoiseSchedule.linear().timesteps(10, "uniform")


def test_more_steps_than_training_timesteps_is_refused():
    with pytest.raises(ValueError, match="exceeds the 100 training timesteps"):
        NoiseSchedule.linear(100).timesteps(101)


def test_timesteps_outside_the_table_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        NoiseSchedule.linear().alpha_sigma(1000.5)


@pytest.mark.parametrize(("table", "problem"), [
    ([0.9, 0.95], "decrease"),
    ([0.9, 0.0], "strictly between 0 and 1"),
    ([0.9, float("nan")], "strictly between 0 and 1"),
    ([[0.9, 0.5]], "1-D table"),
])
def test_bad_alpha_tables_are_refused_with_the_reason(table, problem):
    with pytest.raises(ValueError, match=problem):
        NoiseSchedule.from_alphas_cumprod(table)


def test_a_callable_schedule_is_tabulated_on_the_unit_interval():
    schedule = NoiseSchedule.from_callable(half_signal, 11)
    np.testing.assert_allclose(schedule.alphas_cumprod, half_signal(np.linspace(0, 1, 11)))


@pytest.mark.parametrize("value", ["linear", "cosine", "test_schedules:half_signal",
                                   {"betas": [0.1, 0.2, 0.3]},
                                   {"alphas_cumprod": [0.9, 0.5, 0.1]},
                                   {"sigmas": [0.1, 1.0, 10.0]}])
def test_schedule_from_config_accepts_names_callables_and_tables(value, monkeypatch):
    monkeypatch.setenv("AIOS_TRUST_CODE", "1")  # `module:function` runs only when trusted
    schedule = schedule_from_config(value)
    assert isinstance(schedule, NoiseSchedule)
    assert np.all(np.diff(schedule.alphas_cumprod) < 0)


def test_schedule_from_config_betas_table_is_the_cumulative_product():
    schedule = schedule_from_config({"betas": [0.1, 0.2]})
    np.testing.assert_allclose(schedule.alphas_cumprod, [0.9, 0.72])


@pytest.mark.parametrize("value", ["quadratic", "nope.module:fn", {"betas": [0.1], "x": 1}, 3])
def test_schedule_from_config_explains_what_it_accepts(value):
    with pytest.raises(ValueError, match="schedule"):
        schedule_from_config(value)


# -- masking schedules -------------------------------------------------------------------------


@pytest.mark.parametrize("name", MASKING_SCHEDULES)
def test_masking_schedules_go_from_clean_to_all_masked(name):
    schedule = masking_schedule(name)
    alpha = schedule.alpha(np.linspace(0, 1, 101))
    assert alpha[0] == pytest.approx(1.0)
    assert alpha[-1] == pytest.approx(0.0, abs=1.1e-3)
    assert np.all(np.diff(alpha) < 0)
    np.testing.assert_allclose(schedule.mask_rate(0.3), 1 - schedule.alpha(0.3))


def test_cosine_masking_reveals_few_tokens_first():
    alpha = masking_schedule("cosine").alpha
    first, last = alpha(0.9) - alpha(1.0), alpha(0.0) - alpha(0.1)
    assert first < last


def test_log_linear_masking_is_mdlms():
    alpha = masking_schedule("log-linear").alpha(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(alpha, [1.0, 1 - 0.999 * 0.5, 1e-3])


def test_a_masking_table_is_interpolated():
    schedule = masking_schedule([1.0, 0.2, 0.0])
    np.testing.assert_allclose(schedule.alpha([0.0, 0.25, 0.5, 1.0]), [1.0, 0.6, 0.2, 0.0])


def test_a_masking_callable_is_used_as_is():
    schedule = masking_schedule(lambda t: 1 - t**2)
    assert schedule.alpha(0.5) == pytest.approx(0.75)


@pytest.mark.parametrize("value", ["square", [0.5, 0.0], [1.0, 0.5, 0.7, 0.0]])
def test_bad_masking_schedules_are_refused(value):
    with pytest.raises(ValueError, match="masking|schedule"):
        masking_schedule(value)


def test_masking_times_outside_the_unit_interval_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        masking_schedule("linear").alpha(1.5)
