"""One token and the top probability per position, drawn from rows of logits in few passes.

Why a module of its own: at a vocabulary of 50,000-130,000 this is the whole cost of a masked
sampler's step, so it is written for the memory it touches, once for NumPy and torch:

- **Cache-sized row groups.** On the CPU, positions are handled a few at a time (about 4 MB of
  logits per group) in one scratch buffer reused for every group: each pass (shift, exponential,
  sums) then reads the cache, not main memory, and no logits-sized temporary is allocated (a
  fresh 50 MB array costs more in page faults than the arithmetic done in it). On a GPU every
  position is one group (its memory is fast and launches are what cost).
- **No cumulative sum over the vocabulary.** The draw is an inverse CDF done in two levels: the
  sums of chunks of `CHUNK` tokens (a vectorised reduction), a search among the chunks, then a
  cumulative sum inside the one chosen chunk. A full cumulative sum is a sequential pass that
  writes as much as it reads; this reads once. Its sums are also more accurate in float32 (a
  sum of chunk sums instead of 100,000 running additions).
- **Nothing logits-sized is written back or copied.** The input may be a view of the model's
  output; the mask token is excluded by its column, not by writing -inf into the logits.
- **The confidence** (a position's top probability) is ``1 / sum(exp(logits - max))``: the
  chunk sums give it for free. Top-p (a sort of the vocabulary) runs only when ``top_p < 1``.

Results are the same as a plain softmax, cumulative sum and binary search, up to float rounding
(a draw can differ only where its uniform falls within rounding of a CDF boundary).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import device, is_numpy_array, is_torch_array

from aios_samplers.arrays import as_float, like, namespace

#: Tokens per chunk of the two-level inverse CDF (about the square root of a vocabulary).
CHUNK = 256
#: Elements of one CPU row group (4 MB of float32: the size of a core's share of the cache).
GROUP_ELEMENTS = 1 << 20


def draw_tokens(logits: Any, mask_id: int, uniform: np.ndarray, temperature: float,
                top_p: float) -> tuple[Any, Any]:
    """Per row of `logits` (positions x vocab, unnormalised, left unchanged): a token drawn from
    ``softmax(logits / temperature)`` within the `top_p` nucleus (the argmax for temperature 0),
    never `mask_id`, by inverse CDF at the row's `uniform`; and the row's top probability at
    temperature 1. Both stay in the namespace and on the device of `logits`."""
    xp = namespace(logits)
    positions, vocab = logits.shape
    chunks = -(-vocab // CHUNK)
    on_cpu = is_numpy_array(logits) or str(device(logits)) == "cpu"
    group = max(1, GROUP_ELEMENTS // (chunks * CHUNK)) if on_cpu else positions
    group = min(group, positions)
    dtype = as_float(logits[:1, :1], "the logits").dtype
    # The scratch rows: (group, chunks * CHUNK), the padding columns past the vocabulary stay 0.
    scratch = xp.zeros((group, chunks * CHUNK), dtype=dtype, **_device_kw(logits))
    spare = xp.zeros_like(scratch) if temperature not in (0, 1) else None
    targets = like(uniform, scratch, dtype=dtype)
    drawn, confidence = [], []
    for start in range(0, positions, group):
        rows = as_float(logits[start:start + group], "the logits")
        n = rows.shape[0]
        token, top = _draw_group(rows, scratch[:n], None if spare is None else spare[:n],
                                 mask_id, targets[start:start + n], temperature, top_p)
        drawn.append(token)
        confidence.append(top)
    if len(drawn) == 1:
        return drawn[0], confidence[0]
    return xp.concat(drawn), xp.concat(confidence)


def _draw_group(rows: Any, scratch: Any, spare: Any, mask_id: int, targets: Any,
                temperature: float, top_p: float) -> tuple[Any, Any]:
    xp = namespace(rows)
    vocab = rows.shape[1]
    # One pass for the max; the mask's column is left out only when it matters (it is a row's
    # max, or NaN). One check (one device sync) for the common case.
    top = xp.max(rows, axis=-1, keepdims=True)
    if bool(xp.any(xp.isnan(top) | (top == -np.inf) | (rows[:, mask_id:mask_id + 1] >= top))):
        top = _max_without(rows, mask_id)
        if bool(xp.any(xp.isnan(top))):
            raise ValueError("the head returned NaN logits; check the model's numerics")
        if bool(xp.any(top == -np.inf)):
            raise ValueError("the head returned a position where every token but the mask has "
                             "-inf logit; at least one token must be possible")
    shifted = scratch[:, :vocab]
    _subtract_into(shifted, rows, top)
    shifted[:, mask_id] = -np.inf
    if temperature == 0:
        # The max column shifts to exactly 0 and every other to < 0 (a difference of distinct
        # floats is never 0), so this is the argmax of the logits themselves, ties included.
        choice = xp.argmax(shifted, axis=-1)
        _exp_into(shifted, shifted)
        return choice, 1.0 / xp.sum(shifted, axis=-1)
    confidence = None
    if temperature != 1:
        # Confidence is the top probability at temperature 1, whatever the draw's temperature:
        # choosing *where* to reveal must not depend on *what* was drawn there.
        _exp_into(spare[:, :vocab], shifted)
        confidence = 1.0 / xp.sum(spare[:, :vocab], axis=-1)
        _divide_into(shifted, shifted, temperature)
    _exp_into(shifted, shifted)  # the unnormalised weights; padding columns stay 0
    if top_p < 1:
        if confidence is None:
            confidence = 1.0 / xp.sum(shifted, axis=-1)
        shifted[...] = _top_p(shifted / xp.sum(shifted, axis=-1, keepdims=True), top_p)
    choice, total = _inverse_cdf(scratch, targets)
    if confidence is None:
        confidence = 1.0 / total  # the plain case: the weights' sum is the softmax's
    # Floating error can land on a zero-probability token; take the likeliest instead.
    picked = xp.take_along_axis(scratch, choice[:, None], axis=-1)[:, 0]
    bad = picked <= 0
    if bool(xp.any(bad)):
        choice = xp.where(bad, xp.argmax(scratch, axis=-1), choice)
    return choice, confidence


def _inverse_cdf(weights: Any, targets: Any) -> tuple[Any, Any]:
    """Per row of `weights` (n, chunks * CHUNK; unnormalised, >= 0), the first index whose
    cumulative weight reaches ``target * total``; and each row's total."""
    xp = namespace(weights)
    n, width = weights.shape
    blocks = xp.reshape(weights, (n, width // CHUNK, CHUNK))
    sums = xp.sum(blocks, axis=-1)
    cumulative = xp.cumulative_sum(sums, axis=-1)
    total = cumulative[:, -1]
    goal = targets * total
    chunk = _count_below(cumulative, goal, width // CHUNK)
    before = xp.take_along_axis(cumulative, xp.where(chunk > 0, chunk - 1, 0)[:, None],
                                axis=-1)[:, 0]
    before = xp.where(chunk > 0, before, xp.zeros_like(before))
    inside = xp.take_along_axis(blocks, chunk[:, None, None], axis=1)
    inside = xp.cumulative_sum(xp.reshape(inside, (n, CHUNK)), axis=-1) + before[:, None]
    return chunk * CHUNK + _count_below(inside, goal, CHUNK), total


def _count_below(cumulative: Any, goal: Any, size: int) -> Any:
    """How many entries of each (non-decreasing) row are below the row's goal: a binary
    search's left insertion point, capped at the last entry."""
    xp = namespace(cumulative)
    count = xp.sum(xp.astype(cumulative < goal[:, None], xp.int64), axis=-1)
    return xp.where(count > size - 1, size - 1, count)


def _max_without(rows: Any, column: int) -> Any:
    """Each row's max over every column but `column` (views: the logits are not copied)."""
    xp = namespace(rows)
    parts = [part for part in (rows[:, :column], rows[:, column + 1:]) if part.shape[1]]
    if not parts:
        raise ValueError("the head returned a vocabulary of the mask token alone; at least one "
                         "other token must be possible")
    top = xp.max(parts[0], axis=-1, keepdims=True)
    for part in parts[1:]:
        top = xp.maximum(top, xp.max(part, axis=-1, keepdims=True))
    return top


def _top_p(probs: Any, top_p: float) -> Any:
    """Keep the smallest set of likeliest tokens whose probability reaches top_p (ties broken
    towards the lower token id, as a stable sort would), renormalised.

    Without sorting the vocabulary: the `k` largest probabilities (a partial selection, O(vocab))
    decide the nucleus whenever it has fewer than `k` tokens, which for a language model it
    nearly always has; `k` grows eightfold until it does. The values selected, and so the
    nucleus, are exactly those of a full sort."""
    xp = namespace(probs)
    vocab = probs.shape[-1]
    k = min(vocab, 256)
    while True:
        largest = _largest(probs, k)  # (n, k), descending
        before = xp.cumulative_sum(largest, axis=-1) - largest
        count = xp.sum(xp.astype(before < top_p, xp.int64), axis=-1)  # the nucleus' size
        if k == vocab or not bool(xp.any(count >= k)):
            break
        k = min(vocab, 8 * k)
    smallest_kept = xp.take_along_axis(largest, (count - 1)[:, None], axis=-1)
    keep = probs > smallest_kept
    ties = probs == smallest_kept
    wanted = count - xp.sum(xp.astype(keep, xp.int64), axis=-1)  # how many ties to keep
    tied = xp.sum(xp.astype(ties, xp.int64), axis=-1)
    if bool(xp.any(tied != wanted)):  # keep only the first `wanted` ties, by token id
        ties = ties & (xp.cumulative_sum(xp.astype(ties, xp.int64), axis=-1) <= wanted[:, None])
    kept = xp.where(keep | ties, probs, 0.0)
    return kept / xp.sum(kept, axis=-1, keepdims=True)


def _largest(values: Any, k: int) -> Any:
    """The `k` largest entries of each row, in descending order."""
    if is_torch_array(values):
        import torch

        return torch.topk(values, k, dim=-1, largest=True, sorted=True).values
    xp = namespace(values)
    if k < values.shape[-1]:
        values = -np.partition(-values, k - 1, axis=-1)[:, :k]
    return xp.flip(xp.sort(values, axis=-1), axis=-1)


# -- element-wise passes written into the scratch rows (no temporaries) -----------------------


def _subtract_into(out: Any, a: Any, b: Any) -> None:
    if is_numpy_array(out):
        np.subtract(a, b, out=out)
    elif is_torch_array(out):
        import torch

        torch.sub(a, b, out=out)
    else:
        out[...] = a - b


def _divide_into(out: Any, a: Any, b: float) -> None:
    if is_numpy_array(out):
        np.divide(a, b, out=out)
    elif is_torch_array(out):
        import torch

        torch.div(a, b, out=out)
    else:
        out[...] = a / b


def _exp_into(out: Any, a: Any) -> None:
    if is_numpy_array(out):
        with np.errstate(under="ignore"):
            np.exp(a, out=out)
    elif is_torch_array(out):
        import torch

        torch.exp(a, out=out)
    else:
        out[...] = namespace(a).exp(a)


def _device_kw(array: Any) -> dict[str, Any]:
    return {} if is_numpy_array(array) else {"device": device(array)}


__all__ = ["CHUNK", "GROUP_ELEMENTS", "draw_tokens"]
