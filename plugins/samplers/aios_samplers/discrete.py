"""Samplers for masked (absorbing-state) discrete diffusion: MDLM, LLaDA, Fast-dLLM, ReMDM.

Every sampler here has the same small surface, like diffusers' schedulers:

- ``set_timesteps(num_steps)`` fills ``timesteps``: the times ``t`` in ``(0, 1]`` at which the
  model is asked (1 = all masked); step ``i`` goes from ``times[i]`` to ``times[i + 1]``.
- ``step(logits, index, state, rng)`` takes the model's output for ``state`` at
  ``timesteps[index]`` and returns the next state. Step 0 starts a generation: the positions
  masked in its state are the ones the sampler generates (prompt and suffix stay).
- ``sample(denoise, state, ...)``, the engine's entry (`aios.protocols.Sampler`), is the loop
  over those two, written once in `MaskedSampler`. It skips the model when a step has nothing to
  do (all decoded, or a zero unmask quota), still reporting every step to ``callback``.

``schedule`` is a name (``linear``, ``cosine``, ``log-linear``), ``module:function``, or a
table of alpha values on an even grid of t from 0 to 1 (a YAML list).

States are `aios.protocols.MaskedState`; the model returns logits ``(batch, length, vocab)``
(or a `aios.protocols.Guided` pair, mixed in log-probability space), as NumPy arrays or as
torch tensors on any device: the vocabulary-sized work runs where the logits are, and only each
position's drawn token and confidence come to the host (`aios_samplers.arrays`). Candidates
for each masked position are drawn from ``softmax(logits / temperature)`` restricted to the
smallest set of tokens whose probability reaches ``top_p``; the mask token is never drawn. The
random numbers a step draws do not depend on what the model returned, so a caching sampler
reproduces the plain one's draws exactly.

How many positions a step reveals follows the masking schedule ``alpha(t)``
(`aios.schedules.masking_schedule`): ancestral samplers reveal each masked position with
probability ``(alpha_s - alpha_t) / (1 - alpha_t)``; the others reveal exactly
``M - round(M (1 - alpha_s) / (1 - alpha_t))`` of the ``M`` positions still masked (the unmask
quota), so ``num_steps`` steps always finish. End of sequence: once ``eos_id`` is placed, every
later generated position of its row becomes ``eos_id``; with ``eos_guard`` an EOS candidate is
not committed while a generated position to its left is still masked (the rule that keeps a
model that is sure the text ends *somewhere* from ending it early).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from aios.errors import UsageError
from aios.protocols import Denoiser, MaskedState, StepCallback
from aios.schedules import masking_schedule
from aios_samplers.arrays import like, namespace, to_host
from aios_samplers.drawing import draw_tokens
from aios_samplers.guidance import guided_log_probs_at, logits_at

#: A masking schedule option: a name, ``module:function``, or a table of alpha values.
MaskingSpec = str | list[float]


@dataclass(frozen=True, eq=False)
class RowSubset:
    """The model's output for some rows of the batch only (`rows`: their indices), what a
    sampler's `_evaluate` hands to `step` when the other rows need nothing this step."""

    output: Any
    rows: np.ndarray


class MaskedSampler:
    """The shared loop, candidate drawing and bookkeeping of the masked samplers."""

    family = "discrete"
    #: Whether the sampler reuses logits of rows it does not re-evaluate (`mdlm-cache`).
    caches_logits = False
    #: Whether `num_steps` is only a bound, so the loop ends once nothing is masked.
    _stops_when_done = False

    def __init__(self, schedule: MaskingSpec = "linear", temperature: float = 1.0,
                 top_p: float = 1.0, eos_guard: bool = False) -> None:
        self.schedule = masking_schedule(schedule)
        if not temperature >= 0:
            raise UsageError(f"sampler option temperature must be >= 0 (0 = greedy), got "
                             f"{temperature}")
        if not 0 < top_p <= 1:
            raise UsageError(f"sampler option top_p must be in (0, 1], got {top_p}")
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.eos_guard = bool(eos_guard)
        self.timesteps = np.zeros(0)

    # -- the step-level interface --------------------------------------------------------------

    def set_timesteps(self, num_steps: int) -> None:
        """Split [0, 1] into `num_steps` even steps of time, noisiest first."""
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise UsageError(f"num_steps must be a positive integer, got {num_steps!r}")
        self.num_steps = num_steps
        self.times = np.linspace(1.0, 0.0, num_steps + 1)
        self.timesteps = self.times[:-1]
        self.alphas = self.schedule.alpha(self.times)
        self._started = False

    def step(self, logits: Any, index: int, state: MaskedState,
             rng: np.random.Generator) -> MaskedState:
        """Reveal (and for ReMDM re-mask) positions of `state` after the model's `logits`."""
        tokens = _tokens_of(state)
        if index == 0 and not self._started:
            self._begin(state)
        if not 0 <= index < self.num_steps:
            raise IndexError(f"step {index} is outside 0..{self.num_steps - 1}; call "
                             "set_timesteps first")
        masked = tokens == state.mask_id
        uniforms = rng.random((2, *tokens.shape))  # token choice, then the step's own rule
        wanted = self._candidate_positions(index, masked)
        candidates, confidence = self._candidates(logits, tokens, wanted, state.mask_id,
                                                  uniforms[0])
        commit = self._commit(index, tokens, masked, confidence, candidates, state, rng,
                              uniforms[1])
        new = np.where(commit, candidates, tokens)
        new = self._after_commit(index, new, state, rng)
        new = _end_sequences(new, self._generated, state.eos_id)
        return replace(state, tokens=new.reshape(np.shape(state.tokens)))

    # -- the engine's entry --------------------------------------------------------------------

    def sample(
        self,
        denoise: Denoiser,
        state: MaskedState,
        *,
        num_steps: int,
        rng: np.random.Generator,
        callback: StepCallback | None = None,
    ) -> MaskedState:
        if not isinstance(state, MaskedState):
            raise TypeError(f"a discrete sampler needs an aios.protocols.MaskedState, got "
                            f"{type(state).__name__}; the head's initial_state must return one")
        self.set_timesteps(num_steps)
        self._begin(state)
        cache: dict[str, Any] = {}
        for index, t in enumerate(self.timesteps):
            if self._has_work(index, state):
                logits = self._evaluate(denoise, state, float(t), cache)
                state = self.step(logits, index, state, rng)
            else:
                self._idle_step(index, state, rng)
            self._step_done(index, state)
            if callback is not None:
                callback(index, num_steps, state)
            if self._stops_when_done and not self._has_work(index, state):
                break  # an upper bound on steps, not a count: nothing is left to do
        return state

    # -- what the samplers vary ----------------------------------------------------------------

    def _begin(self, state: MaskedState) -> None:
        """Start a generation: the positions masked now are the ones generated."""
        self._generated = _tokens_of(state) == state.mask_id
        self._started = True

    def _has_work(self, index: int, state: MaskedState) -> bool:
        return bool((_tokens_of(state) == state.mask_id).any())

    def _idle_step(self, index: int, state: MaskedState, rng: np.random.Generator) -> None:
        """A skipped step still draws its random numbers, so skipping never changes results."""
        rng.random((2, *_tokens_of(state).shape))

    def _step_done(self, index: int, state: MaskedState) -> None:
        """Called after every step (block-wise samplers announce finished prefixes here)."""

    def _evaluate(self, denoise: Denoiser, state: MaskedState, t: float,
                  cache: dict[str, Any]) -> Any:
        """Log-probabilities for every row, asking the model only about the rows that need it."""
        tokens = _tokens_of(state)
        rows = self._rows_to_evaluate(tokens, state.mask_id, cache)
        if rows.size == 0 and "logits" in cache:
            return cache["logits"]
        if rows.size in (0, len(tokens)):
            if not self.caches_logits:
                return denoise(state, t)  # every row asked: the model's output as it is
            rows = np.arange(len(tokens))
            output = denoise(state, t)
        else:
            output = denoise(replace(state, tokens=tokens[rows], rows=rows), t)
            if not self.caches_logits:  # only the rows asked about are ever read
                return RowSubset(output, rows)
        # Only masked positions are ever read, so only they are normalised (the rest stay 0).
        masked = tokens[rows] == state.mask_id
        picked, shape = guided_log_probs_at(output, masked)
        vocab = shape[-1]
        xp = namespace(picked)
        kept = cache.get("logits")
        if kept is None or kept.shape[2] != vocab or namespace(kept) is not xp:
            # the cache lives where the logits do (the model's device)
            cache["logits"] = xp.zeros((*tokens.shape, vocab), dtype=picked.dtype,
                                       **_device_of(picked))
            cache["tokens"] = np.full_like(tokens, -1)
        fresh = xp.zeros((rows.size, tokens.shape[1], vocab), dtype=picked.dtype,
                         **_device_of(picked))
        fresh[like(masked, picked)] = picked
        cache["logits"][like(rows, picked)] = fresh
        cache["tokens"][rows] = tokens[rows]
        return cache["logits"]

    def _rows_to_evaluate(self, tokens: np.ndarray, mask_id: int,
                          cache: dict[str, Any]) -> np.ndarray:
        """Finished rows (nothing masked) need no model call."""
        return np.flatnonzero((tokens == mask_id).any(axis=-1))

    def _commit(self, index: int, tokens: np.ndarray, masked: np.ndarray,
                confidence: np.ndarray, candidates: np.ndarray, state: MaskedState,
                rng: np.random.Generator, uniform: np.ndarray) -> np.ndarray:
        """Which positions take their candidate this step (a boolean array like `tokens`)."""
        raise NotImplementedError

    def _after_commit(self, index: int, tokens: np.ndarray, state: MaskedState,
                      rng: np.random.Generator) -> np.ndarray:
        return tokens

    # -- shared helpers ------------------------------------------------------------------------

    def _candidate_positions(self, index: int, masked: np.ndarray) -> np.ndarray:
        """Where step `index` may reveal, so where candidates are drawn: every masked position
        (block-wise samplers: those of the current block only)."""
        return masked

    def _candidates(self, logits: Any, tokens: np.ndarray, where: np.ndarray, mask_id: int,
                    uniform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A candidate token and its probability (the confidence) at the positions `where`.

        Only positions that can be revealed are computed (elsewhere the candidate is the token
        itself and the confidence 0): with a vocabulary of thousands, the per-position softmax
        and draw cost as much as a small model's forward pass."""
        if isinstance(logits, RowSubset):
            if where[np.setdiff1d(np.arange(len(where)), logits.rows)].any():
                raise ValueError("candidates are wanted in rows the model was not asked about")
            picked, shape = logits_at(logits.output, where[logits.rows])
            shape = (len(where), *shape[1:])
        else:
            picked, shape = logits_at(logits, where)
        if not 0 <= mask_id < shape[-1]:
            raise ValueError(f"mask_id {mask_id} is outside the vocabulary of "
                             f"{shape[-1]} logits")
        choice, confidence = tokens.copy(), np.zeros(tokens.shape)
        if not where.any():
            return choice, confidence
        drawn, top = self._draw(picked, mask_id, uniform[where])
        # the one transfer of a step: a token and a confidence per position drawn
        choice[where] = to_host(drawn)
        confidence[where] = to_host(top)
        return choice, confidence

    def _draw(self, logits: Any, mask_id: int, uniform: np.ndarray) -> tuple[Any, Any]:
        """Draw one token per row of `logits` (positions, vocab; unnormalised, possibly a view
        of the model's output, left unchanged); also each row's top probability. Runs in the
        namespace and on the device of `logits` (`aios_samplers.drawing`)."""
        # Confidence is the position's top probability, not the drawn token's: choosing *where*
        # to reveal must not depend on *what* was drawn there, or the choice biases the draw
        # towards likely tokens. With it, revealing one position per step samples an exact
        # model exactly (the chain rule, in an order that depends only on revealed tokens).
        return draw_tokens(logits, mask_id, uniform, self.temperature, self.top_p)

    def _quota(self, masked: np.ndarray, start: float, end: float) -> np.ndarray:
        """How many of each row's masked positions to reveal going from alpha `start` to `end`."""
        count = masked.sum(axis=-1)
        if start >= 1:
            return count
        keep = np.round(count * (1.0 - end) / (1.0 - start)).astype(np.int64)
        return count - np.minimum(keep, count)

    def _eligible(self, masked: np.ndarray, candidates: np.ndarray,
                  eos_id: int | None, final: bool = False) -> np.ndarray:
        # A final step reveals every remaining position at once, so no EOS can come "early"; the
        # guard must not hold any back there, or the generation would end with masks left.
        if not self.eos_guard or eos_id is None or final:
            return masked
        earlier_masked = np.cumsum(masked, axis=-1) - masked > 0
        return masked & ~((candidates == eos_id) & earlier_masked)


def _tokens_of(state: MaskedState) -> np.ndarray:
    tokens = np.asarray(state.tokens)
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"tokens have dtype {tokens.dtype}; a MaskedState holds integer ids")
    if tokens.ndim == 1:
        return tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be (batch, length) or (length,), got shape {tokens.shape}")
    return tokens


def _device_of(array: Any) -> dict[str, Any]:
    """``device=`` for creating an array beside `array` (NumPy takes none)."""
    from array_api_compat import device, is_numpy_array

    return {} if is_numpy_array(array) else {"device": device(array)}


def _end_sequences(tokens: np.ndarray, generated: np.ndarray, eos_id: int | None) -> np.ndarray:
    """After the first generated EOS of a row, every later generated position is EOS."""
    if eos_id is None:
        return tokens
    is_eos = (tokens == eos_id) & generated
    after = np.cumsum(is_eos, axis=-1) - is_eos > 0
    return np.where(after & generated, eos_id, tokens)


def _top_k_mask(score: np.ndarray, eligible: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per row, the `k[row]` eligible positions of highest score."""
    ranked = np.where(eligible, score, -np.inf)
    order = np.argsort(-ranked, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[-1])[None].repeat(len(order), 0), -1)
    return eligible & (rank < k[:, None])


class MDLM(MaskedSampler):
    """MDLM ancestral sampling: each masked position is revealed with the schedule's probability.

    With an exact model and enough steps it draws from the model's distribution exactly.
    """

    def __init__(self, schedule: MaskingSpec = "linear", temperature: float = 1.0,
                 top_p: float = 1.0, eos_guard: bool = False) -> None:
        super().__init__(schedule, temperature, top_p, eos_guard)

    def _commit(self, index, tokens, masked, confidence, candidates, state, rng, uniform):
        alpha_t, alpha_s = self.alphas[index], self.alphas[index + 1]
        reveal = (alpha_s - alpha_t) / (1.0 - alpha_t)
        return self._eligible(masked, candidates, state.eos_id, alpha_s >= 1.0) & (uniform < reveal)


class CachedMDLM(MDLM):
    """MDLM ancestral with caching: a row whose tokens did not change is not re-evaluated.

    Most steps of a many-step ancestral run reveal nothing in a given row, so the model is
    asked only for rows that changed, with the same draws as `mdlm`. This assumes the model
    does not depend on t, which holds for MDLM-style (time-agnostic) masked models.
    """

    caches_logits = True

    def _rows_to_evaluate(self, tokens, mask_id, cache):
        unfinished = (tokens == mask_id).any(axis=-1)
        if "tokens" in cache:
            unfinished &= (tokens != cache["tokens"]).any(axis=-1)
        return np.flatnonzero(unfinished)


class LowConfidence(MaskedSampler):
    """LLaDA's low-confidence remasking: reveal the quota's most confident candidates per step."""

    def __init__(self, schedule: MaskingSpec = "linear", temperature: float = 1.0,
                 top_p: float = 1.0, eos_guard: bool = True) -> None:
        super().__init__(schedule, temperature, top_p, eos_guard)

    def _has_work(self, index, state):
        masked = _tokens_of(state) == state.mask_id
        return bool(self._step_quota(index, masked).any())

    def _step_quota(self, index: int, masked: np.ndarray) -> np.ndarray:
        return self._quota(masked, self.alphas[index], self.alphas[index + 1])

    def _commit(self, index, tokens, masked, confidence, candidates, state, rng, uniform):
        quota = self._step_quota(index, masked)
        final = bool((quota >= masked.sum(axis=-1)).all())
        eligible = self._eligible(masked, candidates, state.eos_id, final)
        return _top_k_mask(confidence, eligible, quota)


class Threshold(LowConfidence):
    """Fast-dLLM's parallel decoding: reveal every candidate above `threshold` each step.

    Each step also reveals the low-confidence quota and at least one position per unfinished
    row, so `num_steps` steps always finish; a confident model finishes in fewer steps, and the
    model is not called once every row is done.
    """

    def __init__(self, schedule: MaskingSpec = "linear", temperature: float = 1.0,
                 top_p: float = 1.0, eos_guard: bool = True, threshold: float = 0.9) -> None:
        super().__init__(schedule, temperature, top_p, eos_guard)
        if not 0 < threshold <= 1:
            raise UsageError(f"sampler option threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)

    def _has_work(self, index, state):
        return bool((_tokens_of(state) == state.mask_id).any())

    def _commit(self, index, tokens, masked, confidence, candidates, state, rng, uniform):
        quota = self._step_quota(index, masked)
        final = bool((quota >= masked.sum(axis=-1)).all())
        eligible = self._eligible(masked, candidates, state.eos_id, final)
        at_least = np.maximum(quota, masked.any(axis=-1))
        quota = _top_k_mask(confidence, eligible, at_least)
        return quota | (eligible & (confidence >= self.threshold))


class SemiAutoregressive(LowConfidence):
    """LLaDA's semi-autoregressive decoding: low-confidence steps inside one block at a time.

    The generated span is cut into blocks of `block_length` positions, decoded left to right;
    the steps are shared evenly between blocks (at least one each). When a block is final the
    head's prefix-cache hook ``state.on_prefix(tokens, length)`` is told (and once at the start
    for the prompt), so a head can cache the prefix's keys and values.
    """

    def __init__(self, schedule: MaskingSpec = "linear", temperature: float = 1.0,
                 top_p: float = 1.0, eos_guard: bool = True, block_length: int = 32) -> None:
        super().__init__(schedule, temperature, top_p, eos_guard)
        if not isinstance(block_length, int) or block_length < 1:
            raise UsageError(f"sampler option block_length must be a positive integer, got "
                             f"{block_length!r}")
        self.block_length = block_length

    def _begin(self, state):
        super()._begin(state)
        generated = self._generated
        columns = np.flatnonzero(generated.any(axis=0))
        start = int(columns[0]) if columns.size else generated.shape[1]
        length = generated.shape[1]
        bounds = [*range(start, length, self.block_length), length]
        blocks = len(bounds) - 1
        if blocks == 0:  # nothing to generate: every step is idle
            self._blocks = [(length, length, j, self.num_steps) for j in range(self.num_steps)]
            return
        if blocks > self.num_steps:
            raise UsageError(f"{blocks} blocks of {self.block_length} need at least {blocks} "
                             f"steps, got {self.num_steps}; raise steps or block_length")
        share = [self.num_steps // blocks + (b < self.num_steps % blocks) for b in range(blocks)]
        # For each step: its block's (start, end), and its place among the block's steps.
        self._blocks: list[tuple[int, int, int, int]] = []
        for b in range(blocks):
            for j in range(share[b]):
                self._blocks.append((bounds[b], bounds[b + 1], j, share[b]))
        if state.on_prefix is not None and start > 0:
            state.on_prefix(_tokens_of(state), start)

    def _candidate_positions(self, index, masked):
        lo, hi, _, _ = self._blocks[index]
        inside = np.zeros_like(masked)
        inside[:, lo:hi] = masked[:, lo:hi]
        return inside

    def _step_quota(self, index, masked):
        lo, hi, j, n = self._blocks[index]
        inside = np.zeros_like(masked)
        inside[:, lo:hi] = masked[:, lo:hi]
        start = self.schedule.alpha(1.0 - j / n)
        end = self.schedule.alpha(1.0 - (j + 1) / n)
        return self._quota(inside, float(start), float(end))

    def _commit(self, index, tokens, masked, confidence, candidates, state, rng, uniform):
        lo, hi, _, _ = self._blocks[index]
        inside = np.zeros_like(masked)
        inside[:, lo:hi] = masked[:, lo:hi]
        quota = self._step_quota(index, masked)
        final = bool((quota >= inside.sum(axis=-1)).all())
        eligible = self._eligible(inside, candidates, state.eos_id, final)
        # Blocks are decoded left to right: nothing to the left is masked, so the guard only
        # looks inside the block, and the quota counts only the block.
        return _top_k_mask(confidence, eligible, quota)

    def _step_done(self, index, state):
        _lo, hi, j, n = self._blocks[index]
        if j + 1 == n and state.on_prefix is not None:
            state.on_prefix(_tokens_of(state), hi)


class ReMDM(MaskedSampler):
    """ReMDM (Wang et al. 2025): ancestral steps that may also re-mask decoded tokens.

    A generated token is re-masked with probability sigma_t = min(eta, (1 - alpha_s) / alpha_t)
    (the "cap" schedule) and masked positions are revealed with probability
    (alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t), which keeps the forward marginals, so
    later steps can correct early mistakes.
    """

    def __init__(self, schedule: MaskingSpec = "linear", temperature: float = 1.0,
                 top_p: float = 1.0, eos_guard: bool = False, eta: float = 0.04) -> None:
        super().__init__(schedule, temperature, top_p, eos_guard)
        if not 0 <= eta <= 1:
            raise UsageError(f"sampler option eta must be in [0, 1], got {eta}")
        self.eta = float(eta)

    def _remask_probability(self, index: int) -> float:
        alpha_t, alpha_s = self.alphas[index], self.alphas[index + 1]
        if alpha_t <= 0:
            return 0.0
        return min(self.eta, (1.0 - alpha_s) / alpha_t)

    def _has_work(self, index, state):
        tokens = _tokens_of(state)
        return bool((tokens == state.mask_id).any()) or self._remask_probability(index) > 0

    def _idle_step(self, index, state, rng):
        rng.random((3, *_tokens_of(state).shape))

    def _commit(self, index, tokens, masked, confidence, candidates, state, rng, uniform):
        alpha_t, alpha_s = self.alphas[index], self.alphas[index + 1]
        sigma = self._remask_probability(index)
        reveal = (alpha_s - (1.0 - sigma) * alpha_t) / (1.0 - alpha_t) if alpha_t < 1 else 1.0
        final = bool(alpha_s >= 1.0)
        return self._eligible(masked, candidates, state.eos_id, final) & (uniform < reveal)

    def _after_commit(self, index, tokens, state, rng):
        # Positions revealed in this very step are not re-masked: re-masking acts on what was
        # decoded at time t, which the masked-before-commit positions were not.
        remask_u = rng.random(tokens.shape)
        sigma = self._remask_probability(index)
        decoded_before = self._decoded_before
        remask = decoded_before & (remask_u < sigma)
        return np.where(remask, state.mask_id, tokens)

    def step(self, logits, index, state, rng):
        tokens = _tokens_of(state)
        if index == 0 and not self._started:
            self._begin(state)
        self._decoded_before = self._generated & (tokens != state.mask_id)
        return super().step(logits, index, state, rng)
