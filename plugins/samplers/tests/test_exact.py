"""The exact targets are only a proof if they are right: check them against first principles."""

import numpy as np
import pytest
from aios_samplers.exact import GaussianMixture, MarkovChain, _erf

A, B, C, EOS, MASK = 0, 1, 2, 3, 4


def test_erf_matches_the_standard_library():
    import math

    x = np.linspace(-4, 4, 81)
    np.testing.assert_allclose(_erf(x), [math.erf(v) for v in x], atol=2e-7)


def test_posterior_mean_of_one_gaussian_is_the_linear_shrinkage():
    mixture = GaussianMixture([1.0], [1.5], [0.49])
    x = np.linspace(-3, 3, 7)[:, None]
    alpha, sigma = 0.6, 0.8
    expected = 1.5 + alpha * 0.49 / (alpha**2 * 0.49 + sigma**2) * (x - alpha * 1.5)
    np.testing.assert_allclose(mixture.posterior_mean(x, alpha, sigma), expected)


def test_posterior_mean_is_the_average_clean_sample_given_the_noisy_one():
    mixture = GaussianMixture.one_d()
    rng = np.random.default_rng(0)
    x0 = mixture.sample(400000, rng)
    alpha, sigma = 0.7, 0.714
    xt = alpha * x0 + sigma * rng.standard_normal(x0.shape)
    near = np.abs(xt[:, 0] - 0.3) < 0.02
    assert x0[near, 0].mean() == pytest.approx(mixture.posterior_mean(np.array([[0.3]]),
                                                                      alpha, sigma)[0, 0],
                                               abs=0.03)


def test_the_exact_cdf_describes_exact_samples():
    mixture = GaussianMixture.one_d()
    samples = np.sort(mixture.sample(20000, np.random.default_rng(1))[:, 0])
    empirical = np.arange(1, samples.size + 1) / samples.size
    assert np.abs(mixture.cdf(samples) - empirical).max() < 0.015


def test_quantile_inverts_the_cdf():
    mixture = GaussianMixture.one_d()
    u = np.linspace(0.001, 0.999, 50)
    np.testing.assert_allclose(mixture.cdf(mixture.quantile(u, 0.5, 0.866), 0.5, 0.866), u,
                               atol=1e-10)


def test_the_ode_end_point_at_timestep_zero_barely_moves_points():
    mixture = GaussianMixture.one_d()
    x = np.linspace(-2, 3, 11)
    np.testing.assert_allclose(mixture.ode_endpoint(x, 0.0), x, atol=0.02)


def test_enumerated_probabilities_sum_to_one_and_respect_eos():
    chain = MarkovChain.small()
    table = chain.probabilities()
    assert sum(table.values()) == pytest.approx(1.0)
    for seq in table:
        first_eos = seq.index(EOS) if EOS in seq else len(seq)
        assert all(t == EOS for t in seq[first_eos:])


def conditional_by_enumeration(chain, tokens, position):
    table = chain.probabilities()
    weights = np.zeros(chain.vocab - 1)
    for seq, p in table.items():
        if all(t == MASK or t == s for t, s in zip(tokens, seq, strict=True)):
            weights[seq[position]] += p
    return weights / weights.sum()


@pytest.mark.parametrize("tokens", [
    [MASK, MASK, MASK, MASK],
    [B, MASK, MASK, MASK],
    [MASK, MASK, C, MASK],
    [A, MASK, MASK, EOS],
])
def test_forward_backward_gives_the_enumerated_conditionals(tokens):
    chain = MarkovChain.small()
    probs = np.exp(chain.log_probs(np.array([tokens])))[0]
    for position in range(4):
        np.testing.assert_allclose(probs[position, :-1],
                                   conditional_by_enumeration(chain, tokens, position),
                                   atol=1e-12)
    assert np.all(probs[:, MASK] == 0)


def test_exact_samples_match_the_table():
    chain = MarkovChain.small()
    assert chain.total_variation(chain.sample(20000, np.random.default_rng(0))) < 0.035


def test_total_variation_of_a_wrong_point_mass_is_nearly_one():
    chain = MarkovChain.small()
    assert chain.total_variation(np.full((10, 4), EOS)) == pytest.approx(1.0)


def test_a_non_absorbing_eos_is_refused():
    with pytest.raises(ValueError, match="absorbing"):
        MarkovChain([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]])
