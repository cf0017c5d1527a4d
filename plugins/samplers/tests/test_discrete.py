"""Masked samplers against a Markov chain, whose conditionals (the perfect model) are exact."""

import itertools

import numpy as np
import pytest
from aios_samplers import discrete
from aios_samplers.exact import MarkovChain
from aios_samplers.plugin import SAMPLERS

from aios.protocols import Guided, MaskedState

DISCRETE = [name for name, (_, family) in SAMPLERS.items() if family == "discrete"]
N = 20000
#: TV of N exact samples from the chain is about 0.023; samplers that are exact stay near it.
TV_BOUND = 0.035
A, B, C, EOS, MASK = 0, 1, 2, 3, 4


def build(name, **options):
    return SAMPLERS[name][0](**options)


def run(sampler, model, steps, seed=0, callback=None):
    rng = np.random.default_rng(seed)
    state = model.initial_state(rng)
    return sampler.sample(model.denoise, state, num_steps=steps, rng=rng, callback=callback)


class TableModel:
    """A head whose every position has the same fixed distribution (rows independent)."""

    def __init__(self, probs, length=1, batch=1, eos_id=None, prompt=()):
        self.probs = np.asarray(probs, dtype=np.float64)
        self.length, self.batch, self.eos_id, self.prompt = length, batch, eos_id, prompt
        self.mask_id = len(self.probs)
        self.calls = 0

    def initial_state(self, rng):
        tokens = np.full((self.batch, self.length), self.mask_id, dtype=np.int64)
        tokens[:, :len(self.prompt)] = self.prompt
        return MaskedState(tokens, mask_id=self.mask_id, eos_id=self.eos_id)

    def denoise(self, state, t):
        self.calls += 1
        with np.errstate(divide="ignore"):
            logits = np.log(np.append(self.probs, 0.0))
        return np.broadcast_to(logits, (*state.tokens.shape, len(logits))).copy()


# -- exactness ---------------------------------------------------------------------------------


def test_mdlm_draws_the_exact_distribution():
    chain = MarkovChain.small(batch=N)
    assert chain.total_variation(run(build("mdlm"), chain, 64).tokens) < TV_BOUND


def test_the_tv_check_rejects_a_one_step_sampler():
    chain = MarkovChain.small(batch=N)
    assert chain.total_variation(run(build("mdlm"), chain, 1).tokens) > 0.3


def test_mdlm_cache_makes_the_same_draws_with_far_fewer_evaluations():
    plain, cached = MarkovChain.small(batch=2000), MarkovChain.small(batch=2000)
    a = run(build("mdlm"), plain, 64).tokens
    b = run(build("mdlm-cache"), cached, 64).tokens
    np.testing.assert_array_equal(a, b)
    assert cached.calls[1] * 3 < plain.calls[1]


def test_a_row_subset_names_its_rows_in_the_full_batch():
    chain = MarkovChain.small(batch=50)
    sizes, states = [], []

    def denoise(state, t):
        rows = np.arange(50) if state.rows is None else state.rows
        if states:  # the rows given are those rows of the current state
            np.testing.assert_array_equal(state.tokens, states[-1][rows])
        sizes.append(len(rows))
        return chain.log_probs(state.tokens)

    rng = np.random.default_rng(0)
    build("mdlm-cache").sample(denoise, chain.initial_state(rng), num_steps=16, rng=rng,
                               callback=lambda i, n, s: states.append(s.tokens))
    assert min(sizes) < 50


def test_mdlm_cache_calls_nothing_for_a_single_row_that_did_not_change():
    chain = MarkovChain.small(batch=1)
    run(build("mdlm-cache"), chain, 200)
    assert chain.calls[0] <= chain.length + 1


@pytest.mark.parametrize("name", ["low-confidence", "threshold", "semi-ar"])
def test_one_position_per_step_samples_exactly_whatever_the_order(name):
    options = {"eos_guard": False, **({"threshold": 1.0} if name == "threshold" else {}),
               **({"block_length": 2} if name == "semi-ar" else {})}
    chain = MarkovChain.small(batch=N)
    out = run(build(name, **options), chain, chain.length).tokens
    assert chain.total_variation(out) < TV_BOUND


def test_prompted_generation_draws_the_exact_conditional():
    chain = MarkovChain.small(batch=N, prompt=(B,))
    out = run(build("low-confidence", eos_guard=False), chain, chain.length - 1).tokens
    assert np.all(out[:, 0] == B)
    assert chain.total_variation(out) < TV_BOUND


def test_remdm_with_small_eta_stays_close_to_the_target():
    chain = MarkovChain.small(batch=N)
    assert chain.total_variation(run(build("remdm", eta=0.005), chain, 40).tokens) < 0.045


# -- valid sequences ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", DISCRETE)
def test_sampler_produces_valid_sequences(name):
    chain = MarkovChain.small(batch=500, length=6, prompt=(A,))
    out = run(build(name, **({"block_length": 2} if name == "semi-ar" else {})), chain, 6).tokens
    assert out.shape == (500, 6)
    assert np.all((out >= 0) & (out < MASK)), "no masks or foreign ids left"
    assert np.all(out[:, 0] == A), "the prompt is kept"
    ended = np.cumsum(out == EOS, axis=1) > 0
    assert np.all(out[ended] == EOS), "after EOS comes only EOS"


@pytest.mark.parametrize("name", DISCRETE)
def test_callback_reports_every_step_even_skipped_ones(name):
    seen = []
    chain = MarkovChain.small(batch=8)
    run(build(name, **({"block_length": 2} if name == "semi-ar" else {})), chain, 10,
        callback=lambda i, n, s: seen.append((i, n)))
    if name == "block-threshold":  # 10 calls at most per block, ending when all is decoded
        assert seen == [(i, seen[0][1]) for i in range(len(seen))] and seen[0][1] >= 10
    else:
        assert seen == [(i, 10) for i in range(10)]


@pytest.mark.parametrize("name", DISCRETE)
def test_a_single_unbatched_sequence_comes_back_unbatched(name):
    chain = MarkovChain.small(batch=1)
    state = chain.initial_state(np.random.default_rng(0))
    state = MaskedState(state.tokens[0], state.mask_id, state.eos_id)
    out = build(name, **({"block_length": 2} if name == "semi-ar" else {})).sample(
        chain.denoise, state, num_steps=4, rng=np.random.default_rng(0))
    assert out.tokens.shape == (4,) and np.all(out.tokens != MASK)


@pytest.mark.parametrize("name", DISCRETE)
def test_sample_is_set_timesteps_then_one_step_per_evaluation(name):
    options = {"block_length": 2} if name == "semi-ar" else {}
    expected = run(build(name, **options), MarkovChain.small(batch=300), 6, seed=4).tokens
    chain = MarkovChain.small(batch=300)
    rng = np.random.default_rng(4)
    state = chain.initial_state(rng)
    stepper = build(name, **options)
    stepper.set_timesteps(6)
    for index, t in enumerate(stepper.timesteps):
        state = stepper.step(chain.denoise(state, t), index, state, rng)
    np.testing.assert_array_equal(state.tokens, expected)


def masked_counts(name, steps, length=8, **options):
    counts = []
    model = TableModel([0.5, 0.5], length=length, batch=3)
    state = run(build(name, **options), model, steps,
                callback=lambda i, n, s: counts.append(int((s.tokens == model.mask_id).sum())))
    return [3 * length, *counts], state


@pytest.mark.parametrize(("schedule", "reveals"), [
    ("linear", [2, 2, 2, 2]),
    ("cosine", [1, 2, 2, 3]),
])
def test_low_confidence_reveals_the_schedules_quota_each_step(schedule, reveals):
    counts, _ = masked_counts("low-confidence", 4, schedule=schedule)
    assert [-d // 3 for d in np.diff(counts)] == reveals


def test_semi_ar_reveals_its_quota_block_by_block():
    counts, _ = masked_counts("semi-ar", 4, block_length=4)
    assert [-d // 3 for d in np.diff(counts)] == [2, 2, 2, 2]


def test_semi_ar_finishes_each_block_before_the_next():
    seen, prefixes = [], []
    model = TableModel([0.5, 0.5], length=7, batch=2, prompt=(0,))

    def initial_state(rng):
        state = TableModel.initial_state(model, rng)
        return MaskedState(state.tokens, state.mask_id,
                           on_prefix=lambda tokens, n: prefixes.append((n, tokens.copy())))

    model.initial_state = initial_state
    run(build("semi-ar", block_length=3), model, 6,
        callback=lambda i, n, s: seen.append(s.tokens != model.mask_id))
    for decoded in seen:
        first_block_done = decoded[:, 1:4].all()
        assert first_block_done or not decoded[:, 4:].any()
    assert [n for n, _ in prefixes] == [1, 4, 7]
    for n, tokens in prefixes:
        assert np.all(tokens[:, :n] != model.mask_id), "a reported prefix is fully decoded"


def test_semi_ar_needs_a_step_per_block():
    with pytest.raises(ValueError, match="at least 3 steps"):
        run(build("semi-ar", block_length=2), TableModel([1.0], length=6), 2)


def test_threshold_reveals_every_confident_position_at_once():
    model = TableModel([0.95, 0.05], length=10, batch=50)
    out = run(build("threshold", threshold=0.9), model, 10).tokens
    assert model.calls == 1
    assert np.all(out != model.mask_id)


def test_threshold_reveals_at_least_one_position_per_step():
    counts, _ = masked_counts("threshold", 100, length=5)
    assert all(d <= -3 for d in np.diff(counts)[:5])


def test_ancestral_samplers_stop_calling_the_model_when_everything_is_decoded():
    model = TableModel([0.5, 0.5], length=2, batch=1)
    run(build("mdlm"), model, 1000)
    assert model.calls < 1000


# -- end of sequence ---------------------------------------------------------------------------


def test_eos_fills_the_rest_of_the_sequence():
    # The model is sure of EOS everywhere: once placed, everything after it is EOS.
    model = TableModel([0.0, 1.0], length=6, batch=4, eos_id=1)
    counts = []
    run(build("low-confidence", eos_guard=False), model, 6,
        callback=lambda i, n, s: counts.append(int((s.tokens == 2).sum())))
    assert counts[0] < 4 * 5, "one step decoded more than its quota of one position"


class SureOfTheEnd(TableModel):
    """a/b/EOS everywhere, but the last position is far more confident that it is EOS."""

    def __init__(self):
        super().__init__([0.45, 0.45, 0.1], length=6, batch=200, eos_id=2)

    def denoise(self, state, t):
        probs = np.tile(np.append(self.probs, 0.0), (*state.tokens.shape, 1))
        probs[:, -1] = [0.05, 0.05, 0.9, 0.0]
        with np.errstate(divide="ignore"):
            return np.log(probs)


def eos_left_of_a_mask(states):
    found = False
    for tokens in states:
        masked = tokens == 3
        found |= bool(np.any((tokens == 2) & (np.cumsum(masked, axis=1) - masked > 0)))
    return found


def test_eos_guard_keeps_eos_from_being_chosen_before_earlier_positions():
    states = []
    run(build("low-confidence"), SureOfTheEnd(), 6,
        callback=lambda i, n, s: states.append(s.tokens))
    assert not eos_left_of_a_mask(states)


def test_without_the_guard_eos_lands_early():
    states = []
    run(build("low-confidence", eos_guard=False), SureOfTheEnd(), 6,
        callback=lambda i, n, s: states.append(s.tokens))
    assert eos_left_of_a_mask(states)


# -- ReMDM -------------------------------------------------------------------------------------


def test_remdm_remasks_decoded_tokens():
    model = TableModel([0.5, 0.5], length=8, batch=50)
    states = []
    run(build("remdm", eta=0.2), model, 20, callback=lambda i, n, s: states.append(s.tokens))
    decoded = [s != model.mask_id for s in states]
    remasked = any(np.any(before & ~after) for before, after in itertools.pairwise(decoded))
    assert remasked
    assert np.all(decoded[-1])


def test_remdm_with_eta_zero_never_remasks():
    model = TableModel([0.5, 0.5], length=8, batch=50)
    states = []
    run(build("remdm", eta=0.0), model, 20, callback=lambda i, n, s: states.append(s.tokens))
    decoded = [s != model.mask_id for s in states]
    assert not any(np.any(before & ~after) for before, after in itertools.pairwise(decoded))


# -- temperature, top-p and guidance -----------------------------------------------------------


def draw_frequencies(sampler, model, n=40000):
    model.batch = n
    out = run(sampler, model, 1).tokens[:, 0]
    return np.bincount(out, minlength=len(model.probs)) / n


def test_temperature_one_draws_the_model_distribution():
    freq = draw_frequencies(build("mdlm"), TableModel([0.6, 0.3, 0.1]))
    np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.01)


def test_temperature_sharpens_the_distribution():
    freq = draw_frequencies(build("mdlm", temperature=0.5), TableModel([0.6, 0.3, 0.1]))
    expected = np.array([0.36, 0.09, 0.01]) / 0.46
    np.testing.assert_allclose(freq, expected, atol=0.01)


def test_temperature_zero_is_greedy():
    freq = draw_frequencies(build("low-confidence", temperature=0.0), TableModel([0.3, 0.5, 0.2]))
    np.testing.assert_array_equal(freq, [0, 1, 0])


def test_top_p_draws_only_from_the_nucleus():
    freq = draw_frequencies(build("mdlm", top_p=0.8), TableModel([0.6, 0.3, 0.1]))
    np.testing.assert_allclose(freq, [2 / 3, 1 / 3, 0.0], atol=0.01)


def test_guided_logits_mix_in_log_probability_space():
    conditional, unconditional = np.array([0.7, 0.2, 0.1]), np.array([0.2, 0.4, 0.4])
    model = TableModel([1 / 3] * 3)

    def denoise(state, t):
        shape = (*state.tokens.shape, 4)
        c = np.broadcast_to(np.log(np.append(conditional, 1e-300)), shape)
        u = np.broadcast_to(np.log(np.append(unconditional, 1e-300)), shape)
        return Guided(c, u, 2.0)

    model.denoise = denoise
    freq = draw_frequencies(build("mdlm"), model)
    expected = unconditional * (conditional / unconditional) ** 2
    np.testing.assert_allclose(freq, expected / expected.sum(), atol=0.01)


def test_torch_logits_are_accepted():
    import torch

    chain = MarkovChain.small(batch=50)
    state = chain.initial_state(np.random.default_rng(0))
    outs = [build("mdlm").sample(denoise, state, num_steps=8, rng=np.random.default_rng(0))
            for denoise in (chain.denoise,
                            lambda s, t: torch.from_numpy(chain.log_probs(s.tokens)))]
    np.testing.assert_array_equal(outs[0].tokens, outs[1].tokens)


def test_the_mask_token_is_never_drawn():
    model = TableModel([0.5, 0.5])
    model.denoise = lambda state, t: np.zeros((*state.tokens.shape, 3))  # mask gets a logit too
    assert draw_frequencies(build("mdlm"), model)[:2].sum() == pytest.approx(1.0)


# -- bad input ---------------------------------------------------------------------------------


def test_a_gaussian_state_is_refused_with_the_fix():
    with pytest.raises(TypeError, match="MaskedState"):
        build("mdlm").sample(lambda s, t: s, np.zeros(3), num_steps=2, rng=None)


def test_logits_of_the_wrong_shape_are_refused():
    model = TableModel([0.5, 0.5], length=3)
    model.denoise = lambda state, t: np.zeros((1, 2, 3))
    with pytest.raises(ValueError, match=r"\(batch, length, vocab\)"):
        run(build("mdlm"), model, 2)


def test_nan_logits_are_refused():
    model = TableModel([0.5, 0.5], length=3)
    model.denoise = lambda state, t: np.full((1, 3, 3), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        run(build("mdlm"), model, 2)


def test_float_tokens_are_refused():
    state = MaskedState(np.zeros((1, 3)), mask_id=2)
    with pytest.raises(TypeError, match="integer"):
        build("mdlm").sample(lambda s, t: s, state, num_steps=2, rng=np.random.default_rng(0))


@pytest.mark.parametrize(("name", "options", "problem"), [
    ("mdlm", {"temperature": -1.0}, "temperature"),
    ("mdlm", {"top_p": 0.0}, "top_p"),
    ("mdlm", {"schedule": "square"}, "unknown masking schedule"),
    ("threshold", {"threshold": 0.0}, "threshold"),
    ("semi-ar", {"block_length": 0}, "block_length"),
    ("remdm", {"eta": 2.0}, "eta"),
])
def test_bad_options_are_refused_with_the_reason(name, options, problem):
    with pytest.raises(ValueError, match=problem):
        build(name, **options)


def test_the_masked_sampler_base_is_not_registered():
    assert discrete.MaskedSampler not in [f for f, _ in SAMPLERS.values()]
