"""Classifier-free guidance: how a sampler turns a head's `Guided` result into one prediction.

Heads evaluate both branches (they own the condition); samplers combine them, so every sampler
of a family applies guidance the same way and a head never needs to know which sampler runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aios.protocols import Guided
from aios_samplers.arrays import as_float, like, namespace


def guided_prediction(output: Any) -> Any:
    """A continuous prediction (epsilon, x0 or v): ``u + scale * (c - u)`` for `Guided`.
    NumPy predictions become float64 (the continuous samplers' host precision); torch tensors
    stay on their device (`aios_samplers.arrays.as_float`)."""
    if isinstance(output, Guided):
        conditional = _as_float(output.conditional, "the conditional prediction")
        unconditional = _as_float(output.unconditional, "the unconditional prediction")
        _same_shape(conditional, unconditional)
        return unconditional + float(output.scale) * (conditional - unconditional)
    return _as_float(output, "the prediction")


def guided_log_probs(output: Any) -> Any:
    """Normalised log-probabilities over the last axis; `Guided` mixes them in log space.
    The result stays in the namespace and on the device of the model's output."""
    if isinstance(output, Guided):
        conditional = log_softmax(as_float(output.conditional, "the conditional logits"))
        unconditional = log_softmax(as_float(output.unconditional, "the unconditional logits"))
        _same_shape(conditional, unconditional)
        xp = namespace(conditional)
        impossible = _is_neg_inf(xp, conditional) | _is_neg_inf(xp, unconditional)
        with np.errstate(invalid="ignore"):
            mixed = unconditional + float(output.scale) * (conditional - unconditional)
        return log_softmax(xp.where(impossible, -np.inf, mixed))
    return log_softmax(as_float(output, "the logits"))


def guided_log_probs_at(output: Any, where: np.ndarray) -> tuple[Any, tuple[int, ...]]:
    """Log-probabilities at the positions `where` only, shaped (positions, vocab), and the
    shape of the whole output. `where` is a (batch, length) mask; the output is (batch,
    length, vocab) or, for one sequence, (length, vocab). Normalising only the positions a
    sampler can change saves most of the work when the vocabulary is large."""
    if isinstance(output, Guided):
        conditional = as_float(output.conditional, "the conditional logits")
        unconditional = as_float(output.unconditional, "the unconditional logits")
        _same_shape(conditional, unconditional)
        picked = Guided(_pick(conditional, where), _pick(unconditional, where), output.scale)
        return guided_log_probs(picked), tuple(conditional.shape)
    logits = as_float(output, "the logits")
    return log_softmax(_pick(logits, where)), tuple(logits.shape)


def logits_at(output: Any, where: np.ndarray) -> tuple[Any, tuple[int, ...]]:
    """As `guided_log_probs_at`, but a plain output's logits are returned as they are, not
    normalised and in their own dtype (a sampler that normalises while drawing saves a pass
    over the vocabulary; it widens bfloat16 a few positions at a time, `as_float`'s rule): a
    view of the output where the positions `where` are one run of one row (a block, or every
    position of one sequence), else a copy of them. A `Guided` output is mixed (which needs
    normalising)."""
    if isinstance(output, Guided):
        return guided_log_probs_at(output, where)
    logits = np.asarray(output) if isinstance(output, list | tuple) else output
    as_float(logits[(0,) * (logits.ndim - 1)][:1], "the logits")  # refuses integer "logits"
    return _pick(logits, where, view=True), tuple(logits.shape)


def _pick(array: Any, where: np.ndarray, view: bool = False) -> Any:
    full = array if array.ndim == 3 else array[None]
    if full.ndim != 3 or tuple(full.shape[:2]) != where.shape:
        raise ValueError(f"the model returned logits of shape {tuple(array.shape)} for tokens "
                         f"of shape {where.shape}; return (batch, length, vocab)")
    if view:
        flat = np.flatnonzero(where)
        if flat.size and flat[-1] - flat[0] + 1 == flat.size:
            row, first = divmod(int(flat[0]), where.shape[1])
            last = int(flat[-1]) - row * where.shape[1]
            if last < where.shape[1]:  # one run inside one row: a view, no copy
                return full[row, first:last + 1]
    return full[like(where, full)]


def log_softmax(logits: Any) -> Any:
    """Log-softmax over the last axis; -inf entries stay impossible, NaN is refused."""
    xp = namespace(logits)
    if bool(xp.any(xp.isnan(logits))):
        raise ValueError("the head returned NaN logits; check the model's numerics")
    top = xp.max(logits, axis=-1, keepdims=True)
    if bool(xp.any(_is_neg_inf(xp, top))):
        raise ValueError("the head returned a position where every token has -inf logit; "
                         "at least one token must be possible")
    shifted = logits - top
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def _is_neg_inf(xp: Any, array: Any) -> Any:
    return xp.isinf(array) & (array < 0)


def _as_float(value: Any, what: str) -> Any:
    if not isinstance(value, np.ndarray | list | tuple) and not np.isscalar(value):
        return as_float(value, what)
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{what} has dtype {array.dtype}; return a float array")
    return array.astype(np.float64, copy=False)


def _same_shape(a: Any, b: Any) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"Guided branches differ in shape: {a.shape} vs {b.shape}; evaluate "
                         "both on the same state")
