"""Attention masks in the 4-D boolean form `transformers` passes to attention untouched.

Why 4-D masks: the Llama and Qwen2 classes of `transformers` build a causal mask unless given a
prepared ``(batch, 1, queries, keys)`` mask, which they hand to scaled-dot-product attention as
it is. So one set of modeling classes serves an autoregressive model (causal), a masked-
diffusion model (bidirectional: LLaDA, Dream) and a block-diffusion model (block-causal: causal
across blocks, bidirectional inside one). ``True`` means "may attend".
"""

from __future__ import annotations

import torch

#: The attention patterns a pretrained model can run with.
PATTERNS = ("causal", "bidirectional", "block-causal")


def attention_mask(
    pattern: str,
    queries: int,
    *,
    keys: int | None = None,
    padding: torch.Tensor | None = None,
    block_size: int | None = None,
    batch: int = 1,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A ``(batch, 1, queries, keys)`` boolean mask.

    The queries are the last `queries` of `keys` positions (the others are cached, earlier
    positions). `padding` (``batch x keys``, 1 = a real token) hides padded keys; a padded
    query still sees itself, so its row is never empty (an empty row makes attention NaN).
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown attention pattern {pattern!r}; choose one of {PATTERNS}")
    keys = queries if keys is None else keys
    if padding is not None:
        batch, device = padding.shape[0], padding.device
    q_pos = torch.arange(keys - queries, keys, device=device)[:, None]
    k_pos = torch.arange(keys, device=device)[None, :]
    if pattern == "causal":
        allowed = k_pos <= q_pos
    elif pattern == "bidirectional":
        allowed = torch.ones(queries, keys, dtype=torch.bool, device=device)
    else:
        if not block_size or block_size < 1:
            raise ValueError("a block-causal mask needs block_size >= 1")
        allowed = (k_pos // block_size) <= (q_pos // block_size)
    mask = allowed.expand(batch, 1, queries, keys)
    if padding is not None:
        mask = mask & padding.bool()[:, None, None, :]
        mask = mask | (q_pos == k_pos)
    return mask.contiguous()


def positions_from_padding(padding: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (padding.long().cumsum(-1) - 1).clamp(min=0)


__all__ = ["PATTERNS", "attention_mask", "positions_from_padding"]
