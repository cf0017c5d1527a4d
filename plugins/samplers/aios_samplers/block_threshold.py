"""Block-wise confidence-threshold decoding: Fast-dLLM's parallel decoding inside the blocks of
a block-diffusion model (Wu et al. 2025).

Why a sampler of its own: a block-diffusion model (an AR model adapted so that attention is
causal across blocks of B positions and bidirectional inside the current one) is decoded one
block at a time, left to right, with the finished prefix cached by the head. Inside the block,
every position the model is sure of is revealed at once, so easy text costs one model call for
several tokens; a hard block takes more calls. Unlike `semi-ar`, the number of calls per block
is not fixed in advance: `num_steps` is only an upper bound on each block's calls.
"""

from __future__ import annotations

import numpy as np

from aios.errors import UsageError
from aios.protocols import MaskedState
from aios_samplers.discrete import MaskedSampler, _tokens_of, _top_k_mask

#: The block length when neither the option nor the head's state gives one.
DEFAULT_BLOCK_LENGTH = 32
#: Which position a step reveals when none reaches the threshold.
FALLBACKS = ("leftmost", "confident")


class BlockThreshold(MaskedSampler):
    """Block diffusion decoding: blocks left to right, confident positions revealed at once.

    Inside the current block a step reveals every masked position whose candidate has
    probability >= `threshold`, and at least one: the leftmost masked position (`fallback:
    leftmost`, the default: its left context is then complete, as in left-to-right decoding,
    which measured far more fluent for an AR model adapted to blocks) or the most confident
    one (`fallback: confident`, as in Fast-dLLM).

    - The span (positions masked at the start) is cut into blocks of `block_length` from its
      first column (heads left-pad rows, so every row's span starts there); a suffix after it
      (infilling) stays as given. `block_length` 0 takes the head state's ``block_length``
      attribute when it has one (the block size its model was trained with), else 32.
    - A step asks the model only about rows with a mask in the current block and draws
      candidates only there; nothing outside the current block is ever revealed.
    - When no row has a mask left in the block, ``state.on_prefix(tokens, block_end)`` tells
      the head the prefix is final (it caches its keys and values) and the next block starts.
      It is told once at the start for the prompt, and not after the last block (no model call
      follows, so a cache would be built for nothing).
    - `num_steps` bounds the model calls *per block* (the engine's `steps`: 20 by default,
      more than the 8 positions of the default text model's blocks, so it does not bind);
      each step reveals at least ceil(masked left in the block / the block's steps left), so
      a block always finishes within `num_steps` calls. A smaller value forces more tokens
      per call.
    - End of text: once a row's ``eos_id`` is committed, the rest of its span becomes
      ``eos_id`` and the row needs no more model calls; with `eos_guard` an EOS candidate is
      held back while a position to its left is masked (never on a block's last step).
    """

    _stops_when_done = True
    #: `num_steps` bounds each block's model calls (`aios.protocols.Sampler`)
    steps_per_block = True

    def __init__(self, threshold: float = 0.9, block_length: int = 0, temperature: float = 1.0,
                 top_p: float = 1.0, eos_guard: bool = True, fallback: str = "leftmost") -> None:
        super().__init__("linear", temperature, top_p, eos_guard)
        if fallback not in FALLBACKS:
            raise UsageError(f"sampler option fallback must be one of {', '.join(FALLBACKS)}, "
                             f"got {fallback!r}")
        self.fallback = fallback
        if not 0 < threshold <= 1:
            raise UsageError(f"sampler option threshold must be in (0, 1], got {threshold}")
        if not isinstance(block_length, int) or isinstance(block_length, bool) \
                or block_length < 0:
            raise UsageError(f"sampler option block_length must be a positive integer, or 0 "
                             f"to use the head's block length (else {DEFAULT_BLOCK_LENGTH}), "
                             f"got {block_length!r}")
        self.threshold = float(threshold)
        self.block_length = block_length

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        """The shared loop over ``blocks x num_steps`` steps at most (`num_steps` per block)."""
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        if not isinstance(state, MaskedState):
            return super().sample(denoise, state, num_steps=num_steps, rng=rng,
                                  callback=callback)  # refused there, with the reason
        columns = np.flatnonzero((_tokens_of(state) == state.mask_id).any(axis=0))
        span = int(columns[-1]) + 1 - int(columns[0]) if columns.size else 0
        blocks = -(-span // self._block_size(state))
        self._per_block = num_steps
        return super().sample(denoise, state, num_steps=max(1, blocks * num_steps), rng=rng,
                              callback=callback)

    # -- blocks ----------------------------------------------------------------------------------

    def _begin(self, state: MaskedState) -> None:
        super()._begin(state)
        size = self._block_size(state)
        columns = np.flatnonzero(self._generated.any(axis=0))
        start, end = (int(columns[0]), int(columns[-1]) + 1) if columns.size else (0, 0)
        #: (first column, end column) of each block, left to right.
        self.bounds = [(lo, min(lo + size, end)) for lo in range(start, end, size)]
        self._block: int | None = None  # the block being decoded, its first step, its steps
        self._entered = self._allotted = 0
        if state.on_prefix is not None and self.bounds and start > 0:
            state.on_prefix(_tokens_of(state), start)

    def _block_size(self, state: MaskedState) -> int:
        if self.block_length:
            return self.block_length
        size = getattr(state, "block_length", None)
        if size is None:
            return DEFAULT_BLOCK_LENGTH
        if not isinstance(size, int | np.integer) or isinstance(size, bool) or size < 1:
            raise ValueError(f"the head's state has block_length {size!r}; it must be a "
                             "positive integer (or set the sampler's block_length option)")
        return int(size)

    def _first_unfinished(self, masked: np.ndarray) -> int | None:
        """The leftmost block with a mask in some row (None once everything is decoded)."""
        for b, (lo, hi) in enumerate(self.bounds):
            if masked[:, lo:hi].any():
                return b
        return None

    def _current(self, index: int, masked: np.ndarray) -> tuple[int, int, int]:
        """The current block's columns and how many steps it has left, from step `index`
        (an empty block once everything is decoded: a step then reveals nothing)."""
        b = self._first_unfinished(masked)
        if b is None:
            return 0, 0, 1
        if b != self._block:  # a block starts: its share of the steps that are left
            self._block, self._entered = b, index
            per_block = getattr(self, "_per_block", None)  # None: stepped without `sample`
            self._allotted = per_block or -(-(self.num_steps - index) // (len(self.bounds) - b))
        lo, hi = self.bounds[b]
        return lo, hi, max(1, self._allotted - (index - self._entered))

    # -- the loop's hooks ------------------------------------------------------------------------

    def _rows_to_evaluate(self, tokens, mask_id, cache):
        masked = tokens == mask_id
        b = self._first_unfinished(masked)
        if b is None:
            return np.zeros(0, dtype=np.int64)
        lo, hi = self.bounds[b]
        return np.flatnonzero(masked[:, lo:hi].any(axis=-1))

    def _candidate_positions(self, index, masked):
        lo, hi, _ = self._current(index, masked)
        inside = np.zeros_like(masked)
        inside[:, lo:hi] = masked[:, lo:hi]
        return inside

    def _commit(self, index, tokens, masked, confidence, candidates, state, rng, uniform):
        lo, hi, steps_left = self._current(index, masked)
        inside = np.zeros_like(masked)
        inside[:, lo:hi] = masked[:, lo:hi]
        left = inside.sum(axis=-1)
        at_least = np.maximum(-(-left // steps_left), left > 0)
        # A row that must reveal its whole block now cannot hold an EOS back.
        everything = at_least >= left
        eligible = np.where(everything[:, None], inside,
                            self._eligible(inside, candidates, state.eos_id))
        confident = eligible & (confidence >= self.threshold)
        if self.fallback == "leftmost":
            order = -np.arange(masked.shape[-1], dtype=np.float64)[None].repeat(len(masked), 0)
            return _top_k_mask(order, eligible, at_least) | confident
        return _top_k_mask(confidence, eligible, at_least) | confident

    def _step_done(self, index, state):
        if state.on_prefix is None or not self.bounds:
            return
        tokens = _tokens_of(state)
        b = self._first_unfinished(tokens == state.mask_id)
        if b is not None and b != self._block and self._block is not None:
            # Blocks before b are final and a model call follows: the head may cache them.
            state.on_prefix(tokens, self.bounds[b][0])


__all__ = ["DEFAULT_BLOCK_LENGTH", "FALLBACKS", "BlockThreshold"]
