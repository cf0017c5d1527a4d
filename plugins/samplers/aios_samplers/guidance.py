"""Classifier-free guidance: how a sampler turns a head's `Guided` result into one prediction.

Heads evaluate both branches (they own the condition); samplers combine them, so every sampler
of a family applies guidance the same way and a head never needs to know which sampler runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aios.protocols import Guided


def guided_prediction(output: Any) -> np.ndarray:
    """A continuous prediction (epsilon, x0 or v): ``u + scale * (c - u)`` for `Guided`."""
    if isinstance(output, Guided):
        conditional = _as_float(output.conditional, "the conditional prediction")
        unconditional = _as_float(output.unconditional, "the unconditional prediction")
        _same_shape(conditional, unconditional)
        return unconditional + float(output.scale) * (conditional - unconditional)
    return _as_float(output, "the prediction")


def guided_log_probs(output: Any) -> np.ndarray:
    """Normalised log-probabilities over the last axis; `Guided` mixes them in log space."""
    if isinstance(output, Guided):
        conditional = log_softmax(_as_float(output.conditional, "the conditional logits"))
        unconditional = log_softmax(_as_float(output.unconditional, "the unconditional logits"))
        _same_shape(conditional, unconditional)
        impossible = np.isneginf(conditional) | np.isneginf(unconditional)
        with np.errstate(invalid="ignore"):
            mixed = unconditional + float(output.scale) * (conditional - unconditional)
        return log_softmax(np.where(impossible, -np.inf, mixed))
    return log_softmax(_as_float(output, "the logits"))


def guided_log_probs_at(output: Any, where: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Log-probabilities at the positions `where` only, shaped (positions, vocab), and the
    shape of the whole output. `where` is a (batch, length) mask; the output is (batch,
    length, vocab) or, for one sequence, (length, vocab). Normalising only the positions a
    sampler can change saves most of the work when the vocabulary is large."""
    if isinstance(output, Guided):
        conditional = _as_float(output.conditional, "the conditional logits")
        unconditional = _as_float(output.unconditional, "the unconditional logits")
        _same_shape(conditional, unconditional)
        picked = Guided(_pick(conditional, where), _pick(unconditional, where), output.scale)
        return guided_log_probs(picked), conditional.shape
    logits = _as_float(output, "the logits")
    return log_softmax(_pick(logits, where)), logits.shape


def _pick(array: np.ndarray, where: np.ndarray) -> np.ndarray:
    full = array if array.ndim == 3 else array[None]
    if full.ndim != 3 or full.shape[:2] != where.shape:
        raise ValueError(f"the model returned logits of shape {array.shape} for tokens of "
                         f"shape {where.shape}; return (batch, length, vocab)")
    return full[where]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis; -inf entries stay impossible, NaN is refused."""
    if np.isnan(logits).any():
        raise ValueError("the head returned NaN logits; check the model's numerics")
    top = logits.max(axis=-1, keepdims=True)
    if np.isneginf(top).any():
        raise ValueError("the head returned a position where every token has -inf logit; "
                         "at least one token must be possible")
    shifted = logits - top
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _as_float(value: Any, what: str) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{what} has dtype {array.dtype}; return a float array")
    return array.astype(np.float64, copy=False)


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"Guided branches differ in shape: {a.shape} vs {b.shape}; evaluate "
                         "both on the same state")
