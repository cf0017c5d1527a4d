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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from aios.runtime import BlockKVCache, RowCaches
from aios_text.adapt.model import BlockDiffusionLM

#: What a step reveals when no position reaches the threshold.
FALLBACKS = ("leftmost", "confident")


@dataclass
class DecodeResult:
    """Generated ids (without the prompt), and what they cost."""

    ids: list[int]
    forward_calls: int = 0
    seconds: float = 0.0
    tokens_per_step: list[int] = field(default_factory=list)
    stopped_at_end: bool = False


@torch.inference_mode()
def generate_blocks(
    model: BlockDiffusionLM,
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
    began = time.perf_counter()
    device = model.network.get_input_embeddings().weight.device
    mask_id = model.mask_token_id
    never = torch.tensor([mask_id, *banned], device=device)
    cache = BlockKVCache()
    result = DecodeResult([])
    # the prompt but its last token goes into the cache; the last token is "pending": it is
    # cached by the first step's forward, whose hidden state there predicts the first block
    if len(prompt) > 1:
        step_hidden(model, cache, torch.tensor(prompt[:-1], device=device),
                    pending=len(prompt) - 1, start=0)
        result.forward_calls += 1
    pending = torch.tensor(prompt[-1:], device=device)
    position = len(prompt) - 1
    generated: list[int] = []
    blocks = _block_plan(new_tokens, block_size, suffix)
    for size, given in blocks:
        block = torch.full((size,), mask_id, device=device)
        if given:
            block[size - len(given):] = torch.tensor(given, device=device)
        first_logits: Tensor | None = None
        while bool((block == mask_id).any()):
            hidden = step_hidden(model, cache, torch.cat([pending, block]),
                                 pending=len(pending), start=position)
            result.forward_calls += 1
            if len(pending):
                first_logits = model.logits(hidden[len(pending) - 1])
                position += len(pending)
                pending = pending[:0]
            logits = torch.cat([first_logits[None], model.logits(hidden[-size:-1])]).float()
            logits[:, never] = -torch.inf
            confidence, candidate = torch.softmax(logits, dim=-1).max(dim=-1)
            masked = block == mask_id
            confidence = torch.where(masked, confidence, -1.0)
            reveal = masked & (confidence >= threshold)
            if not bool(reveal.any()):
                pick = int(masked.nonzero()[0]) if fallback == "leftmost" else int(
                    confidence.argmax())
                reveal[pick] = True
            block = torch.where(reveal, candidate, block)
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


def step_hidden(model: BlockDiffusionLM, cache: BlockKVCache, ids: Tensor, *, pending: int,
                start: int) -> Tensor:
    """Hidden states of `ids` = `pending` finished tokens (causal; their keys join `cache`)
    followed by a block of masked-or-revealed positions (they see the whole prefix and each
    other), at sequence positions `start`, `start + 1`, ..."""
    return step_hidden_rows(model, [cache], [ids], pending=[pending], start=[start])[0]


def step_hidden_rows(model: BlockDiffusionLM, caches: Sequence[BlockKVCache],
                     ids: Sequence[Tensor], *, pending: Sequence[int],
                     start: Sequence[int]) -> list[Tensor]:
    """`step_hidden` for several rows in one forward, each with its own cache, pending count,
    block and start (rows of one prompt batch, or of different requests). Rows are padded on
    the left to one width; padding attends only to itself and nothing attends to it, so each
    row's hidden states are what it alone would get (up to float rounding)."""
    device = ids[0].device
    new = [int(row.shape[0]) for row in ids]
    width = max(new)
    rows = RowCaches(caches, new, pending)
    padded = torch.full((len(ids), width), model.mask_token_id, dtype=torch.long, device=device)
    positions = torch.zeros(len(ids), width, dtype=torch.long, device=device)
    q = torch.arange(width, device=device)
    allowed = torch.zeros(len(ids), width, width, dtype=torch.bool, device=device)
    for r, row in enumerate(ids):
        first = width - new[r]
        padded[r, first:] = row
        positions[r, first:] = torch.arange(start[r], start[r] + new[r], device=device)
        local = q - first
        real = local >= 0
        # a pending (finished) token sees the finished tokens up to itself; a block position
        # sees every real new position (the pending ones and the whole block)
        sees = (local[None, :] <= local[:, None]) | (local[:, None] >= pending[r])
        allowed[r] = sees & real[:, None] & real[None, :]
        allowed[r] |= torch.eye(width, dtype=torch.bool, device=device) & ~real[:, None]
    past = rows.key_mask(device)[:, None, :].expand(-1, width, -1)
    past = past & (q >= width - torch.tensor(new, device=device)[:, None])[:, :, None]
    mask = torch.cat([past, allowed], dim=-1)[:, None]
    hidden = model.hidden(padded, mask, positions, cache=rows)
    return [hidden[r, width - new[r]:] for r in range(len(ids))]


__all__ = ["FALLBACKS", "DecodeResult", "generate_blocks", "step_hidden", "step_hidden_rows"]
