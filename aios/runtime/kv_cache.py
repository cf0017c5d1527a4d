"""A key/value cache for block decoding, in the duck type `transformers`' attention layers call
(``update(keys, values, layer_idx, ...)`` and ``get_seq_length()``).

Why not `transformers.DynamicCache`: it appends every forward's keys, and its API for cutting
positions out changes between versions. Block diffusion needs a cache of *chosen* positions (the
finished prefix, and for the dual cache the still-masked suffix too) that the steps inside a
block read without changing: here a forward either records (stores the keys of every position
it computes), reads (returns cached + new keys, storing nothing) or appends its first
`append` query positions (a finished block joins the prefix in the same forward that starts
the next block).
"""

from __future__ import annotations

from typing import Any

import torch


class BlockKVCache:
    """Per layer, keys and values ``(batch, kv_heads, positions, head_dim)`` of cached positions."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.recording = False
        self.append = 0  #: in a reading forward, how many leading new positions to keep
        self.positions: torch.Tensor | None = None  #: which sequence positions are cached

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.recording:
            if layer_idx == len(self.keys):
                self.keys.append(keys)
                self.values.append(values)
            else:
                self.keys[layer_idx], self.values[layer_idx] = keys, values
            return keys, values
        if layer_idx == len(self.keys):  # nothing cached yet: an empty prefix
            self.keys.append(keys[..., :0, :])
            self.values.append(values[..., :0, :])
        all_keys = torch.cat([self.keys[layer_idx], keys], dim=-2)
        all_values = torch.cat([self.values[layer_idx], values], dim=-2)
        if self.append:
            kept = self.keys[layer_idx].shape[-2] + self.append
            self.keys[layer_idx], self.values[layer_idx] = (all_keys[..., :kept, :],
                                                            all_values[..., :kept, :])
        return all_keys, all_values

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.keys[layer_idx].shape[-2]) if self.keys else 0

    def keep(self, positions: torch.Tensor) -> BlockKVCache:
        """A reading cache of the recorded `positions` only (indices into the recorded ones)."""
        kept = BlockKVCache()
        kept.keys = [k.index_select(-2, positions) for k in self.keys]
        kept.values = [v.index_select(-2, positions) for v in self.values]
        kept.positions = positions
        return kept


__all__ = ["BlockKVCache"]
