"""One request's generation: the served engine's flow, with the model calls batched.

`ArrowEngine.diffuse` stays the one place that runs a generation (conditioning, memory, the
sampler loop, decoding, write-back). For each request the server builds a light `ArrowEngine`
around the served one's config, conditioners and memory, with two per-request parts:

- its own sampler (samplers keep per-generation state, and requests choose their own sampler,
  temperature and top_p);
- a `RequestHead` in front of the shared head: it sends `denoise` through the `StepBatcher`
  (or, for heads that cannot batch rows of different requests, checks the time limit and the
  client between steps), and it keeps what the response needs to report: which positions were
  generated, how many tokens, whether a row ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from aios.engine import ArrowEngine, needed_block_wise_sampler, sampler_name_for
from aios.errors import AiosError
from aios.serve.batching import Cancelled, DeadlineExceeded, Guard, Member, pad_id_of
from aios.serve.errors import ApiError

__all__ = ["RequestHead", "TextOutcome", "build_sampler", "run_generation"]


class RequestHead:
    """The shared head, seen by one request (see the module docstring)."""

    def __init__(self, head: Any, guard: Member | Guard, setup_lock: threading.Lock) -> None:
        self.head = head
        self.modality = head.modality
        self.family = head.family
        self.guard = guard
        self._setup_lock = setup_lock
        self.generated: np.ndarray | None = None  # (rows, width) True where generated
        self.final: Any = None
        self.request: Any = None  # the request after conditioning (memory in its context)

    def initial_state(self, request: Any, rng: np.random.Generator) -> Any:
        self.request = request
        with self._setup_lock:  # a head resets per-generation fields here
            state = self.head.initial_state(request, rng)
        tokens = getattr(state, "tokens", None)
        if tokens is not None:
            self.generated = np.atleast_2d(np.asarray(tokens)) == state.mask_id
        return state

    def denoise(self, state: Any, t: Any, request: Any) -> Any:
        if isinstance(self.guard, Member):
            return self.guard.denoise(state, t, request)
        self.guard.check()
        return self.head.denoise(state, t, request)

    def decode(self, state: Any, request: Any) -> Any:
        # The engine decodes once, after the sampler's last step: the seat can go now, so the
        # other generations' next batch does not wait for this one's answer to be written.
        self.guard.done()
        self.final = state
        return self.head.decode(state, request)

    # -- what responses report -----------------------------------------------------------------

    def pad_id(self) -> int | None:
        return pad_id_of(self.head)

    def completions(self, state: Any, request: Any, *, stable: bool = False) -> list[str]:
        """The generated part of each row, as text: masked positions shown as the head shows
        them, or with `stable` only the part before the first still-masked position (what can
        be streamed as final)."""
        pad = self.pad_id()
        assert self.generated is not None and pad is not None
        tokens = np.atleast_2d(np.asarray(state.tokens))
        keep = self.generated.copy()
        if stable:
            masked = np.cumsum(tokens == state.mask_id, axis=-1) > 0
            keep &= ~masked
        only = np.where(keep, tokens, pad)
        texts = self.head.decode(replace(state, tokens=only), replace(request, prompt=[""]
                                                                      * len(only)))
        return list(texts)

    def token_counts(self, state: Any) -> tuple[list[int], list[int], list[bool]]:
        """Per row: prompt tokens (context included), generated tokens before any end of
        sequence, and whether the row ended by itself (EOS) rather than by running out."""
        assert self.generated is not None
        tokens = np.atleast_2d(np.asarray(state.tokens))
        pad = self.pad_id()
        eos = getattr(state, "eos_id", None)
        prompt = ((~self.generated) & (tokens != pad)).sum(axis=-1)
        ended = (self.generated & (tokens == eos)) if eos is not None else np.zeros_like(
            self.generated)
        before_end = self.generated & ~(np.cumsum(ended, axis=-1) > 0)
        return (prompt.tolist(), before_end.sum(axis=-1).tolist(), ended.any(axis=-1).tolist())


@dataclass
class TextOutcome:
    """A finished text generation, as the endpoints report it."""

    texts: list[str]
    prompt_tokens: int
    completion_tokens: list[int]
    ended: list[bool]
    retrieved: list[dict[str, Any]] = field(default_factory=list)


def build_sampler(engine: ArrowEngine, name: str | None, temperature: float | None,
                  top_p: float | None) -> Any:
    """A fresh sampler for one request: the configured one, or `name`, with the request's
    temperature and top_p (samplers keep per-generation state, so none is shared)."""
    config = engine.config.sampler
    registry = engine.registry
    assert registry is not None
    chosen = name or sampler_name_for(engine.config, registry, engine.head)
    if chosen not in registry.names("sampler"):
        raise ApiError(400, f"unknown sampler {chosen!r}; choose one of "
                            f"{', '.join(registry.names('sampler', family=engine.head.family))}",
                       param="sampler", code="unknown_sampler")
    entry = registry.get("sampler", chosen)
    if entry.family != engine.head.family:
        raise ApiError(400, f"sampler {chosen!r} is {entry.family} but this model needs a "
                            f"{engine.head.family} sampler", param="sampler")
    options = dict(config.options) if chosen == config.name else {}
    if temperature is not None:
        options["temperature"] = temperature
    if top_p is not None:
        options["top_p"] = top_p
    try:
        sampler = entry.factory(**options)
    except TypeError as exc:
        raise ApiError(400, f"sampler {chosen!r} does not take these options: {exc}",
                       param="sampler") from None
    except ValueError as exc:
        raise ApiError(400, f"sampler {chosen!r}: {exc}", param="sampler") from None
    wanted = needed_block_wise_sampler(engine.head, sampler)
    if wanted:
        raise ApiError(400, f"this model decodes block by block and sampler {chosen!r} is not "
                            f"block-wise; use {wanted!r} or leave the sampler unset",
                       param="sampler", code="unknown_sampler")
    return sampler


def run_generation(
    engine: ArrowEngine,
    head: RequestHead,
    sampler: Any,
    prompt: Any,
    *,
    steps: int | None,
    seed: int | None,
    memory: bool | None,
    options: dict[str, Any],
    on_step: Callable[[int, int, Any], None] | None = None,
) -> tuple[Any, ArrowEngine]:
    """Run one generation in the calling thread (a worker thread); returns the output and the
    per-request engine (its `last_request` holds the retrieved memory)."""
    request_engine = ArrowEngine(engine.config, head, sampler, engine.conditioners,
                                 engine.storage, embedder=engine.embedder,
                                 registry=engine.registry)
    try:
        output = request_engine.diffuse(prompt, num_steps=steps, seed=seed, callback=on_step,
                                        memory_guided=memory, **options)
    except (Cancelled, DeadlineExceeded, ApiError):
        raise
    except ValueError as exc:  # the head or sampler refused the request's values
        raise ApiError(400, str(exc)) from None
    except AiosError as exc:  # aios's own refusals name the request's problem (a prompt
        raise ApiError(400, str(exc)) from None  # the image model has no class for, ...)
    return output, request_engine
