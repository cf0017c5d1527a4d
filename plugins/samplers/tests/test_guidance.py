import numpy as np
import pytest
from aios_samplers.guidance import guided_log_probs, guided_prediction, log_softmax

from aios.protocols import Guided


def test_a_plain_prediction_passes_through_as_float64():
    out = guided_prediction(np.ones(3, dtype=np.float32))
    assert out.dtype == np.float64 and np.all(out == 1)


def test_guided_prediction_extrapolates_from_unconditional_to_conditional():
    out = guided_prediction(Guided(np.array([2.0]), np.array([1.0]), 3.0))
    np.testing.assert_allclose(out, [4.0])


def test_guided_branches_must_have_the_same_shape():
    with pytest.raises(ValueError, match="same state"):
        guided_prediction(Guided(np.zeros(3), np.zeros(4), 2.0))


def test_log_softmax_normalises_and_keeps_impossible_tokens_impossible():
    out = log_softmax(np.array([[0.0, np.log(3.0), -np.inf]]))
    np.testing.assert_allclose(np.exp(out), [[0.25, 0.75, 0.0]])


def test_a_position_with_no_possible_token_is_refused():
    with pytest.raises(ValueError, match="at least one token"):
        log_softmax(np.full((1, 3), -np.inf))


def test_a_token_impossible_in_either_branch_stays_impossible_under_guidance():
    c = np.array([[0.0, 0.0, -np.inf]])
    u = np.array([[-np.inf, 0.0, 0.0]])
    out = np.exp(guided_log_probs(Guided(c, u, 2.0)))
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.0]])
