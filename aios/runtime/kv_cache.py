"""A key/value cache for block decoding, in the duck type `transformers`' attention layers call
(``update(keys, values, layer_idx, ...)`` and ``get_seq_length()``).

Why not `transformers.DynamicCache`: it appends every forward's keys, and its API for cutting
positions out changes between versions. Block diffusion needs a cache of *chosen* positions (the
finished prefix, and for the dual cache the still-masked suffix too) that the steps inside a
block read without changing: here a forward either records (stores the keys of every position
it computes), reads (returns cached + new keys, storing nothing) or appends its first
`append` query positions (a finished block joins the prefix in the same forward that starts
the next block).

Both caches hold whatever arrays the network computes with (torch tensors on any device, or
NumPy arrays for `aios.models.ArrayLlama`): they only concatenate, take and pad, through the
Python array API standard (`array-api-compat`), so one cache serves every runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as device_of


def _concat(first: Any, second: Any) -> Any:
    """Join two key (or value) arrays along the positions axis (-2)."""
    return array_namespace(first, second).concat([first, second], axis=-2)


class BlockKVCache:
    """Per layer, keys and values ``(batch, kv_heads, positions, head_dim)`` of cached positions."""

    def __init__(self) -> None:
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.recording = False
        self.positions: Any = None  #: which sequence positions are cached

    def update(self, keys: Any, values: Any, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[Any, Any]:
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
        return (_concat(self.keys[layer_idx], keys), _concat(self.values[layer_idx], values))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.keys[layer_idx].shape[-2]) if self.keys else 0

    def keep(self, positions: Any) -> BlockKVCache:
        """A reading cache of the recorded `positions` only (indices into the recorded ones)."""
        kept = BlockKVCache()
        kept.keys = [array_namespace(k).take(k, positions, axis=-2) for k in self.keys]
        kept.values = [array_namespace(v).take(v, positions, axis=-2) for v in self.values]
        kept.positions = positions
        return kept


class RowCaches:
    """The cache of one forward over rows that each have their own `BlockKVCache`.

    The forward's ``width`` query slots hold, per row, that row's new positions right-aligned
    (``new[r]`` of them; the slots before are padding the caller masks out). Cached keys are
    right-aligned too, in ``self.width`` slots: row r's ``lengths[r]`` cached keys fill the last
    ones. After the forward, each row's cache holds its old keys and its first ``keep[r]`` new
    positions. Right-aligning keeps each row's real keys in one contiguous run, so the attention
    mask (`key_mask`) is the only place padding is named.
    """

    def __init__(self, caches: Sequence[BlockKVCache], new: Sequence[int],
                 keep: Sequence[int]) -> None:
        if not len(caches) == len(new) == len(keep):
            raise ValueError("caches, new and keep need one entry per row")
        if any(k > n for k, n in zip(keep, new, strict=True)):
            raise ValueError("a row cannot keep more new positions than it has")
        self.caches, self.new, self.keep = list(caches), list(new), list(keep)
        self.lengths = [c.get_seq_length() for c in self.caches]
        self.width = max(self.lengths, default=0)

    def key_mask(self) -> np.ndarray:
        """``(rows, width)`` True where a cached key is real (not padding), on the host."""
        slot = np.arange(self.width)
        return slot[None, :] >= (self.width - np.array(self.lengths, dtype=np.int64))[:, None]

    def update(self, keys: Any, values: Any, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[Any, Any]:
        slots = keys.shape[-2]
        if len(self.caches) == 1:  # one row: nothing to pad, no copy beyond the concatenation
            past_k, past_v = self._layer(0, layer_idx, keys)
        else:
            xp = array_namespace(keys)
            shape = (keys.shape[0], keys.shape[1], self.width, keys.shape[-1])
            past_k = xp.zeros(shape, dtype=keys.dtype, device=device_of(keys))
            past_v = xp.zeros(shape, dtype=values.dtype, device=device_of(values))
            for r in range(len(self.caches)):
                own_k, own_v = self._layer(r, layer_idx, keys)
                if self.lengths[r]:
                    past_k[r, :, self.width - self.lengths[r]:] = own_k[0]
                    past_v[r, :, self.width - self.lengths[r]:] = own_v[0]
        for r, cache in enumerate(self.caches):
            first = slots - self.new[r]
            kept = slice(first, first + self.keep[r])
            own_k, own_v = self._layer(r, layer_idx, keys)
            if self.keep[r]:
                cache.keys[layer_idx] = _concat(own_k, keys[r:r + 1, :, kept])
                cache.values[layer_idx] = _concat(own_v, values[r:r + 1, :, kept])
        return _concat(past_k, keys), _concat(past_v, values)

    def _layer(self, row: int, layer_idx: int, like: Any) -> tuple[Any, Any]:
        """Row `row`'s cached keys and values at `layer_idx` (an empty entry is made for a
        row with nothing cached yet, so every cache has one entry per layer)."""
        cache = self.caches[row]
        if layer_idx == len(cache.keys):
            cache.keys.append(like[:1, :, :0])
            cache.values.append(like[:1, :, :0])
        return cache.keys[layer_idx], cache.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width


__all__ = ["BlockKVCache", "RowCaches"]
