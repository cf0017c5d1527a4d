"""Block-diffusion decoding of an adapted model: blocks left to right over a causal KV cache,
confidence-threshold parallel unmasking inside a block (Fast-dLLM), end-of-text stops.

One forward per step. A block starts as masks; each step runs only the block's positions
against the cached prefix and reveals every masked position whose most likely token is at
least `threshold` likely (at least the single most confident one), so easy text goes several
tokens a step. A finished block joins the cache in the same forward that takes the next
block's first step: its positions attend causally (exactly the keys the AR model would cache),
the new block's attend to the whole prefix and bidirectionally to themselves (see
`aios_text.adapt.model` for why this is the attention the model was trained with).

With the logits shift, a block's first position is predicted by the hidden state of the last
finished token, which is the AR model's own next-token prediction; every other position i by
the block's hidden state at i - 1.

Infilling (`suffix`): the gap and the suffix form one block whose suffix positions are
already revealed, so the bidirectional attention inside the block lets the gap read what
follows it; the model was trained with blocks of up to `max_block` positions.

Runtimes: the model is any `BlockModel`, the torch one (`aios_text.adapt.model.
BlockDiffusionLM`) or the NumPy one (`aios_text.adapt.array_model.ArrayBlockLM`). Token ids,
masks and positions are built on the host (a few KB per step) and handed to the model as its
arrays; per step only the block's confidences and candidate tokens come back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from array_api_compat import array_namespace

from aios.runtime import BlockKVCache, RowCaches, to_host

#: What a step reveals when no position reaches the threshold.
FALLBACKS = ("leftmost", "confident")


class BlockModel(Protocol):
    """What block decoding needs of an adapted network, in whichever runtime it runs."""

    mask_token_id: int
    vocab_size: int
    config: Any  #: the `transformers` config (``max_position_embeddings``)

    def asarray(self, host: np.ndarray) -> Any:
        """A host array as this model's array (its namespace and device)."""

    def hidden(self, ids: Any, attention_mask: Any, position_ids: Any,
               cache: Any = None) -> Any:
        """Last hidden states ``(batch, length, dim)``."""

    def logits(self, hidden: Any) -> Any:
        """The output layer."""

    def inference(self) -> AbstractContextManager[Any]:
        """The context every decoding step runs in (no autograd in torch)."""

    def parameter_count(self) -> int:
        """How many parameters the network has."""


@dataclass
class DecodeResult:
    """Generated ids (without the prompt), and what they cost."""

    ids: list[int]
    forward_calls: int = 0
    seconds: float = 0.0
    tokens_per_step: list[int] = field(default_factory=list)
    stopped_at_end: bool = False


def generate_blocks(
    model: BlockModel,
    prompt: list[int],
    *,
    new_tokens: int = 128,
    block_size: int = 8,
    threshold: float = 0.9,
    end_id: int | None = None,
    suffix: list[int] | None = None,
    banned: tuple[int, ...] = (),
    fallback: str = "leftmost",
    on_step: Callable[[list[int]], None] | None = None,
) -> DecodeResult:
    """Generate up to `new_tokens` after `prompt` (at least one token), stopping at `end_id`.

    `on_step(ids)` sees the generated ids after every step, masked positions as the mask id
    (a streaming client draws blocks forming). With `suffix`, exactly `new_tokens` fill the gap
    before it (no early stop) and the result is the gap only.

    `fallback`: which position a step reveals when none reaches the threshold: ``leftmost``
    (the first masked one: its left context is then complete, as in left-to-right decoding)
    or ``confident`` (the most confident one anywhere in the block).
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    if not prompt:
        raise ValueError("block decoding needs at least one prompt token (the first block is "
                         "predicted from the last one)")
    if new_tokens < 1 or block_size < 1:
        raise ValueError("new_tokens and block_size must be positive")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    with model.inference():
        return _generate(model, prompt, new_tokens, block_size, threshold, end_id, suffix,
                         (model.mask_token_id, *banned), fallback, on_step)


def _generate(model: BlockModel, prompt: list[int], new_tokens: int, block_size: int,
              threshold: float, end_id: int | None, suffix: list[int] | None,
              never: tuple[int, ...], fallback: str,
              on_step: Callable[[list[int]], None] | None) -> DecodeResult:
    began = time.perf_counter()
    mask_id = model.mask_token_id
    cache = BlockKVCache()
    result = DecodeResult([])
    # the prompt but its last token goes into the cache; the last token is "pending": it is
    # cached by the first step's forward, whose hidden state there predicts the first block
    if len(prompt) > 1:
        step_hidden(model, cache, np.array(prompt[:-1]), pending=len(prompt) - 1, start=0)
        result.forward_calls += 1
    pending = np.array(prompt[-1:])
    position = len(prompt) - 1
    generated: list[int] = []
    for size, given in _block_plan(new_tokens, block_size, suffix):
        block = np.full(size, mask_id, dtype=np.int64)
        if given:
            block[size - len(given):] = given
        first: Any = None  # the hidden state that predicts the block's first position
        while bool((block == mask_id).any()):
            hidden = step_hidden(model, cache, np.concatenate([pending, block]),
                                 pending=len(pending), start=position)
            result.forward_calls += 1
            if len(pending):
                first = hidden[len(pending) - 1:len(pending)]
                position += len(pending)
                pending = pending[:0]
            xp = array_namespace(hidden)
            states = xp.concat([first, hidden[hidden.shape[0] - size:-1]], axis=0)
            confidence, candidate = top_tokens(model.logits(states), never)
            masked = block == mask_id
            confidence = np.where(masked, confidence, -1.0)
            reveal = masked & (confidence >= threshold)
            if not reveal.any():
                pick = int(np.flatnonzero(masked)[0]) if fallback == "leftmost" else int(
                    confidence.argmax())
                reveal[pick] = True
            block = np.where(reveal, candidate, block)
            result.tokens_per_step.append(int(reveal.sum()))
            if on_step is not None:
                on_step(generated + block.tolist())
        ids = block.tolist()
        if given:
            ids = ids[:size - len(given)]
        generated += ids
        pending = block
        if end_id is not None and not suffix and end_id in ids:
            generated = generated[:len(generated) - len(ids) + ids.index(end_id)]
            result.stopped_at_end = True
            break
    result.ids = generated[:new_tokens]
    result.seconds = time.perf_counter() - began
    return result


def top_tokens(logits: Any, never: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `logits` (in the model's namespace and device): the most likely token other
    than `never`, and its probability, brought to the host. The probability of the top token
    is ``1 / sum(exp(logits - max))``, so no vocabulary-sized softmax is written out."""
    xp = array_namespace(logits)
    logits = xp.astype(logits, xp.float32, copy=True)
    if never:
        logits[:, list(never)] = -np.inf
    top = xp.max(logits, axis=-1, keepdims=True)
    confidence = 1.0 / xp.sum(xp.exp(logits - top), axis=-1)
    return to_host(confidence), to_host(xp.argmax(logits, axis=-1))


def _block_plan(new_tokens: int, block_size: int,
                suffix: list[int] | None) -> list[tuple[int, list[int]]]:
    """(size, revealed tail) of each block: blocks of `block_size`, or one block over the gap
    and the suffix."""
    if suffix:
        return [(new_tokens + len(suffix), list(suffix))]
    sizes = [block_size] * (new_tokens // block_size)
    if new_tokens % block_size:
        sizes.append(new_tokens % block_size)
    return [(s, []) for s in sizes]


def step_hidden(model: BlockModel, cache: BlockKVCache, ids: np.ndarray, *, pending: int,
                start: int) -> Any:
    """Hidden states of `ids` = `pending` finished tokens (causal; their keys join `cache`)
    followed by a block of masked-or-revealed positions (they see the whole prefix and each
    other), at sequence positions `start`, `start + 1`, ..."""
    return step_hidden_rows(model, [cache], [ids], pending=[pending], start=[start])[0]


def step_hidden_rows(model: BlockModel, caches: Sequence[BlockKVCache],
                     ids: Sequence[np.ndarray], *, pending: Sequence[int],
                     start: Sequence[int]) -> list[Any]:
    """`step_hidden` for several rows in one forward, each with its own cache, pending count,
    block (host token ids) and start (rows of one prompt batch, or of different requests).
    Rows are padded on the left to one width; padding attends only to itself and nothing
    attends to it, so each row's hidden states are what it alone would get (up to float
    rounding)."""
    new = [len(row) for row in ids]
    width = max(new)
    rows = RowCaches(caches, new, pending)
    padded = np.full((len(ids), width), model.mask_token_id, dtype=np.int64)
    positions = np.zeros((len(ids), width), dtype=np.int64)
    q = np.arange(width)
    allowed = np.zeros((len(ids), width, width), dtype=bool)
    for r, row in enumerate(ids):
        first = width - new[r]
        padded[r, first:] = row
        positions[r, first:] = np.arange(start[r], start[r] + new[r])
        local = q - first
        real = local >= 0
        # a pending (finished) token sees the finished tokens up to itself; a block position
        # sees every real new position (the pending ones and the whole block)
        sees = (local[None, :] <= local[:, None]) | (local[:, None] >= pending[r])
        allowed[r] = sees & real[:, None] & real[None, :]
        allowed[r] |= np.eye(width, dtype=bool) & ~real[:, None]
    real_query = q[None, :] >= (width - np.array(new))[:, None]  # (rows, width)
    past = rows.key_mask()[:, None, :] & real_query[:, :, None]
    mask = np.concatenate([past, allowed], axis=-1)[:, None]
    hidden = model.hidden(model.asarray(padded), model.asarray(mask), model.asarray(positions),
                          cache=rows)
    return [hidden[r, width - new[r]:] for r in range(len(ids))]


__all__ = ["FALLBACKS", "BlockModel", "DecodeResult", "generate_blocks", "step_hidden",
           "step_hidden_rows", "top_tokens"]
