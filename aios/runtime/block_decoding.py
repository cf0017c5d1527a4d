"""Block-wise masked-diffusion decoding of a pretrained model in torch, with the prefix and the
dual key/value caches of Fast-dLLM (Wu et al. 2025).

The generated span is cut into blocks decoded left to right; inside a block each step reveals
the most confident masked positions (greedy: each position's argmax, the mask token excluded),
either an even share of the block per step or, with `threshold`, every position at least that
confident (at least one per row). Prompts of different lengths are left-padded and padded keys
masked out, so a row decodes as it would alone.

Caches (``cache=``):
- ``none``: every step runs the whole sequence.
- ``prefix``: at a block's first step the whole sequence runs once, recording keys and values;
  the block's later steps run only the block and what follows it, reading the prefix's keys.
- ``dual``: as ``prefix``, and the suffix after the block is read from the cache too, so a step
  runs only the block's positions.
With bidirectional attention a cached position's keys would change as later tokens are
revealed, so both caches are approximations (the ones Fast-dLLM measured to keep accuracy);
with block-causal attention (a block attends to itself and earlier blocks) they are exact.
Everything runs on the model's device under `torch.inference_mode`; nothing per step comes to
the host but a finished-block check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from aios.runtime.kv_cache import BlockKVCache

CACHES = ("none", "prefix", "dual")


@dataclass
class DecodeStats:
    """What a decode cost: forward calls, query positions computed, seconds."""

    forward_calls: int = 0
    positions: int = 0
    seconds: float = 0.0
    steps_per_block: list[int] = field(default_factory=list)


@torch.inference_mode()
def decode_blocks(
    model: torch.nn.Module,
    prompts: list[list[int]],
    *,
    new_tokens: int,
    block_size: int = 32,
    steps_per_block: int | None = None,
    cache: str = "none",
    threshold: float | None = None,
    attention: str | None = None,
    mask_token_id: int | None = None,
) -> tuple[torch.Tensor, DecodeStats]:
    """Generate `new_tokens` after each prompt; returns ``(batch, new_tokens)`` token ids (on the
    model's device) and the cost. `model` is an `aios.models.families.PretrainedModel` (it
    gives the network, the mask token, the attention pattern and Dream's logit shift)."""
    if cache not in CACHES:
        raise ValueError(f"cache must be one of {CACHES}, got {cache!r}")
    if new_tokens < 1 or block_size < 1:
        raise ValueError("new_tokens and block_size must be positive")
    mask_id = model.mask_token_id if mask_token_id is None else mask_token_id
    if mask_id is None:
        raise ValueError(f"the {model.family.name} family has no mask token; pass "
                         "mask_token_id= to decode an AR model adapted to diffusion")
    pattern = attention or model.family.attention
    steps = steps_per_block or block_size
    device = model.device
    lead = 1 if model.family.shift_logits else 0
    if lead and min(len(p) for p in prompts) == 0:
        raise ValueError("a model with shifted logits needs at least one prompt token")
    tokens, padding, start = _layout(prompts, new_tokens, mask_id, device)
    length = tokens.shape[1]
    positions = (padding.long().cumsum(-1) - 1).clamp(min=0)
    blocks = _block_ids(length, start, block_size, device)
    stats = DecodeStats()
    began = time.perf_counter()
    for s in range(start, length, block_size):
        e = min(s + block_size, length)
        stored: BlockKVCache | None = None
        for step in range(steps):
            masked = tokens[:, s:e] == mask_id
            if step > 0 and not bool(masked.any()):
                break
            if cache == "none" or step == 0:
                recorder = BlockKVCache() if cache != "none" else None
                if recorder is not None:
                    recorder.recording = True
                span = torch.arange(length, device=device)
                raw = _forward(model, tokens, padding, positions, blocks, span, None, pattern,
                               recorder)
                if recorder is not None:
                    keep = torch.arange(s - lead, device=device)
                    if cache == "dual":
                        keep = torch.cat([keep, torch.arange(e, length, device=device)])
                    stored = recorder.keep(keep)
            else:
                end = length if cache == "prefix" else e
                span = torch.arange(s - lead, end, device=device)
                raw = _forward(model, tokens, padding, positions, blocks, span, stored, pattern,
                               None)
            stats.forward_calls += 1
            stats.positions += tokens.shape[0] * int(span.numel())
            first = s - lead - int(span[0])
            logits = raw[:, first:first + (e - s)].float()
            _commit(tokens, s, e, logits, masked, mask_id, steps - step, threshold)
        stats.steps_per_block.append(step + 1)
    stats.seconds = time.perf_counter() - began
    return tokens[:, start:], stats


def _layout(prompts: list[list[int]], new_tokens: int, mask_id: int,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded prompts followed by `new_tokens` masks, and the padding (1 = real)."""
    start = max(len(p) for p in prompts)
    length = start + new_tokens
    tokens = torch.full((len(prompts), length), mask_id, dtype=torch.long, device=device)
    padding = torch.ones(len(prompts), length, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        pad = start - len(prompt)
        padding[row, :pad] = 0
        if prompt:
            tokens[row, pad:start] = torch.tensor(prompt, dtype=torch.long, device=device)
    return tokens, padding, start


def _block_ids(length: int, start: int, block_size: int, device: torch.device) -> torch.Tensor:
    """Each position's block: the prompt is block -1, then blocks of `block_size`."""
    pos = torch.arange(length, device=device)
    return torch.where(pos < start, -1, (pos - start) // block_size)


def _forward(model: torch.nn.Module, tokens: torch.Tensor, padding: torch.Tensor,
             positions: torch.Tensor, blocks: torch.Tensor, span: torch.Tensor,
             cached: BlockKVCache | None, pattern: str,
             recorder: BlockKVCache | None) -> torch.Tensor:
    """Raw (unshifted) logits of the positions `span`, attending to the cached positions and
    to `span` itself, in that key order."""
    keys = span if cached is None else torch.cat([cached.positions, span])
    q_block, k_block = blocks[span][:, None], blocks[keys][None, :]
    if pattern == "bidirectional":
        allowed = torch.ones(span.numel(), keys.numel(), dtype=torch.bool, device=span.device)
    elif pattern == "block-causal":
        allowed = k_block <= q_block
    else:
        allowed = keys[None, :] <= span[:, None]
    mask = allowed[None, None] & padding.bool()[:, None, None, keys]
    mask = mask | (span[:, None] == keys[None, :])[None, None]  # a padded query sees itself
    kv = cached if cached is not None else recorder
    extra = {} if kv is None else {model.cache_keyword(): kv}
    out = model.network(input_ids=tokens[:, span], attention_mask=mask,
                        position_ids=positions[:, span], use_cache=kv is not None, **extra)
    return out.logits


def _commit(tokens: torch.Tensor, s: int, e: int, logits: torch.Tensor, masked: torch.Tensor,
            mask_id: int, steps_left: int, threshold: float | None) -> None:
    """Reveal this step's positions of block [s, e) in place."""
    logits[..., mask_id] = -torch.inf
    probs = torch.softmax(logits, dim=-1)
    confidence, candidate = probs.max(dim=-1)
    confidence = torch.where(masked, confidence, -torch.inf)
    remaining = masked.sum(dim=-1)
    if threshold is not None:
        commit = masked & (confidence >= threshold)
        best = confidence.argmax(dim=-1, keepdim=True)
        commit.scatter_(1, best, masked.gather(1, best))  # at least one per unfinished row
    else:
        quota = torch.div(remaining + steps_left - 1, steps_left, rounding_mode="floor")
        rank = confidence.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)
        commit = masked & (rank < quota[:, None])
    tokens[:, s:e] = torch.where(commit, candidate, tokens[:, s:e])


__all__ = ["CACHES", "DecodeStats", "decode_blocks"]
