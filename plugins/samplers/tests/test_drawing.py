"""The fast draw (`aios_samplers.drawing`) against the plain computation it replaces: a full
softmax, a cumulative sum over the vocabulary and a binary search, in float64."""

import numpy as np
import pytest
import torch
from aios_samplers import drawing
from aios_samplers.drawing import CHUNK, draw_tokens
from aios_samplers.guidance import logits_at


def reference(logits, mask_id, uniform, temperature, top_p):
    """What a masked sampler's step computed before: the textbook way, in float64."""
    logits = np.array(logits, dtype=np.float64)
    logits[:, mask_id] = -np.inf
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    confidence = probs.max(axis=-1)
    if temperature == 0:
        return logits.argmax(axis=-1), confidence
    weights = np.exp(shifted / temperature)
    weights /= weights.sum(axis=-1, keepdims=True)
    if top_p < 1:
        order = np.argsort(-weights, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(weights, order, axis=-1)
        keep = np.zeros_like(weights, dtype=bool)
        np.put_along_axis(keep, order, np.cumsum(sorted_p, axis=-1) - sorted_p < top_p, -1)
        weights = np.where(keep, weights, 0.0)
    cumulative = np.cumsum(weights, axis=-1)
    drawn = [np.searchsorted(row, u * row[-1]) for row, u in zip(cumulative, uniform,
                                                                   strict=True)]
    return np.array(drawn), confidence


def random_logits(positions, vocab, seed=0, scale=3.0):
    return scale * np.random.default_rng(seed).standard_normal((positions, vocab))


CASES = [(1.0, 1.0), (0.7, 1.0), (1.0, 0.9), (1.3, 0.5), (0.0, 1.0)]


@pytest.mark.parametrize(("temperature", "top_p"), CASES)
@pytest.mark.parametrize("vocab", [7, CHUNK, 3 * CHUNK + 5])
@pytest.mark.parametrize("mask_id", ["first", "middle", "last"])
def test_the_draw_and_the_confidence_are_the_plain_softmaxs(temperature, top_p, vocab, mask_id):
    mask = {"first": 0, "middle": vocab // 2, "last": vocab - 1}[mask_id]
    logits = random_logits(300, vocab)
    uniform = np.random.default_rng(1).random(300)
    expected = reference(logits, mask, uniform, temperature, top_p)
    drawn, confidence = draw_tokens(logits, mask, uniform, temperature, top_p)
    np.testing.assert_array_equal(drawn, expected[0])
    np.testing.assert_allclose(confidence, expected[1], rtol=1e-12)
    assert not (drawn == mask).any()


@pytest.mark.parametrize(("temperature", "top_p"), CASES)
def test_row_groups_change_nothing(temperature, top_p, monkeypatch):
    logits = random_logits(50, 2 * CHUNK + 3, seed=2)
    uniform = np.random.default_rng(3).random(50)
    whole = draw_tokens(logits, 4, uniform, temperature, top_p)
    monkeypatch.setattr(drawing, "GROUP_ELEMENTS", 3 * CHUNK * 7)  # 7 rows per group
    grouped = draw_tokens(logits, 4, uniform, temperature, top_p)
    for a, b in zip(whole, grouped, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("temperature", "top_p"), CASES)
def test_torch_draws_the_same_tokens(temperature, top_p):
    logits = random_logits(120, 3 * CHUNK + 5, seed=4)
    uniform = np.random.default_rng(5).random(120)
    ours = draw_tokens(torch.from_numpy(logits), 2, uniform, temperature, top_p)
    theirs = draw_tokens(logits, 2, uniform, temperature, top_p)
    assert isinstance(ours[0], torch.Tensor)
    np.testing.assert_array_equal(ours[0].numpy(), theirs[0])
    np.testing.assert_allclose(ours[1].numpy(), theirs[1], rtol=1e-12)


def test_float32_draws_agree_but_at_rounding_boundaries():
    logits = random_logits(2000, 1000, seed=6)
    uniform = np.random.default_rng(7).random(2000)
    expected, _ = reference(logits, 0, uniform, 1.0, 1.0)
    drawn, confidence = draw_tokens(logits.astype(np.float32), 0, uniform, 1.0, 1.0)
    assert confidence.dtype == np.float32
    assert (drawn != expected).mean() < 0.002


def test_bfloat16_logits_are_widened_to_float32():
    logits = torch.from_numpy(random_logits(10, 50)).to(torch.bfloat16)
    drawn, confidence = draw_tokens(logits, 0, np.full(10, 0.5), 1.0, 1.0)
    assert confidence.dtype == torch.float32 and drawn.dtype == torch.int64


def test_the_logits_are_left_unchanged():
    logits = random_logits(20, 40)
    kept = logits.copy()
    for temperature, top_p in CASES:
        draw_tokens(logits, 3, np.full(20, 0.3), temperature, top_p)
    np.testing.assert_array_equal(logits, kept)


def test_a_uniform_of_zero_never_draws_an_impossible_token():
    with np.errstate(divide="ignore"):
        logits = np.log(np.array([[0.0, 0.0, 0.5, 0.5, 0.0]]))
    drawn, _ = draw_tokens(logits, 4, np.zeros(1), 1.0, 1.0)
    assert int(drawn[0]) in (2, 3)


@pytest.mark.parametrize(("logits", "problem"), [
    (np.array([[np.nan, 0.0, 1.0]]), "NaN"),  # column 1 is the mask
    (np.array([[-np.inf, 5.0, -np.inf]]), "every token but the mask"),
])
def test_impossible_logits_are_refused(logits, problem):
    with pytest.raises(ValueError, match=problem):
        draw_tokens(logits, 1, np.zeros(1), 1.0, 1.0)


# -- which positions are copied ----------------------------------------------------------------


def test_a_run_of_one_row_is_a_view_of_the_models_output():
    output = random_logits(2 * 10, 30).reshape(2, 10, 30)
    where = np.zeros((2, 10), dtype=bool)
    where[1, 3:7] = True
    picked, shape = logits_at(output, where)
    assert shape == (2, 10, 30) and np.shares_memory(picked, output)
    np.testing.assert_array_equal(picked, output[1, 3:7])


def test_scattered_positions_are_copied_in_order():
    output = random_logits(2 * 10, 30).reshape(2, 10, 30)
    where = np.zeros((2, 10), dtype=bool)
    where[0, 9] = where[1, 0] = where[1, 4] = True
    picked, _ = logits_at(output, where)
    np.testing.assert_array_equal(picked, output[where])


# -- top-p -------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_torch", [False, True])
def test_top_p_breaks_ties_at_the_boundary_towards_the_lower_token_id(as_torch):
    # sorted stably: 0.3 (id 0), 0.2 (1), 0.2 (2), 0.2 (3), 0.1 (4); the mass before id 3 is
    # 0.7 >= 0.6, so the nucleus is {0, 1, 2}
    logits = np.log(np.tile([0.3, 0.2, 0.2, 0.2, 0.1, 1.0], (1000, 1)))
    uniform = np.linspace(0, 1, 1000, endpoint=False)
    value = torch.from_numpy(logits) if as_torch else logits
    drawn, _ = draw_tokens(value, 5, uniform, 1.0, 0.6)
    counts = np.bincount(np.asarray(drawn), minlength=6)
    assert counts[3] == counts[4] == counts[5] == 0
    np.testing.assert_allclose(counts[:3] / 1000, [3 / 7, 2 / 7, 2 / 7], atol=0.002)


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.95, 0.999])
def test_a_nucleus_larger_than_the_first_selection_is_found(top_p):
    logits = random_logits(40, 5000, seed=8, scale=0.5)  # flat: the nucleus has thousands
    uniform = np.random.default_rng(9).random(40)
    expected, _ = reference(logits, 7, uniform, 1.0, top_p)
    drawn, _ = draw_tokens(logits, 7, uniform, 1.0, top_p)
    np.testing.assert_array_equal(drawn, expected)
