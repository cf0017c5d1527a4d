"""Batching across requests at the step level: many generations, one model call per step.

Each generation runs its own sampler in its own thread (samplers keep per-generation state, and
running them unchanged is what keeps the server's output the engine's output). Where a sampler
calls the model, its `denoise` goes through a `StepBatcher`: the call waits until every other
active generation has asked too (or `gather_s`, or a quarter of the last model call, has
passed), and one thread then evaluates all the waiting calls at once: through the head's
`denoise_many` when it has one, else as one `denoise` over their rows, left-padded to one
width, each row at its own time `t`. A row's logits depend only on that row (padding is hidden
from attention), so batching changes no result beyond float rounding.

A generation leaves the batch the moment it finishes, is cancelled (its client went away) or
passes its deadline: its next `denoise` raises instead of waiting, so its rows are gone from
the very next model call.

`Admission` bounds the work: at most `max_active` generations run, at most `max_queue` wait for
a slot; beyond that a request is refused at once (the server answers 429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from aios.protocols import BatchesGenerations, MaskedState

__all__ = [
    "Admission",
    "Cancelled",
    "DeadlineExceeded",
    "Guard",
    "Member",
    "Overloaded",
    "StepBatcher",
    "can_batch_rows",
    "pad_id_of",
]


class Cancelled(Exception):
    """The generation's client went away; its rows are dropped."""


class DeadlineExceeded(Exception):
    """The generation ran past its time limit."""


class Overloaded(Exception):
    """Every slot is busy and the queue is full; `retry_after` is a hint in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy; retry after {retry_after} s")
        self.retry_after = retry_after


def can_batch_rows(head: Any) -> bool:
    """Whether concurrent requests may share the model calls of `head`: a head that evaluates
    several generations' states at once (`denoise_many`, `aios.protocols.BatchesGenerations`),
    or a discrete head whose `denoise` takes one `t` per row (`row_times`) and pads with a
    known token, so rows of different requests stack into one state."""
    if isinstance(head, BatchesGenerations):
        return True
    return (getattr(head, "family", None) == "discrete" and getattr(head, "row_times", False)
            and pad_id_of(head) is not None)


def pad_id_of(head: Any) -> int | None:
    """The token a text head pads rows with: its own `pad_id`, else its tokenizer's."""
    pad = getattr(head, "pad_id", None)
    if pad is None:
        pad = getattr(getattr(head, "tokenizer", None), "pad_id", None)
    return None if pad is None else int(pad)


@dataclass(eq=False)
class _Call:
    """One waiting `denoise` call: its rows, its time, and where the answer goes."""

    tokens: np.ndarray  # (rows, width)
    t: float
    state: MaskedState
    request: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class Guard:
    """The stop conditions of one generation: a cancel flag and a deadline. A generation that
    does not batch holds only this; a batched one holds a `Member`, which is also a seat."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.cancelled = threading.Event()

    def check(self) -> None:
        """Raise if the generation must stop (cancelled or past its deadline)."""
        if self.cancelled.is_set():
            raise Cancelled("the client disconnected")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("the generation ran past its time limit")

    def done(self) -> None:
        """The sampler has finished (nothing to free here)."""

    def leave(self) -> None:
        """Stop: the next check raises `Cancelled`."""
        self.cancelled.set()
        self.done()


class Member(Guard):
    """One generation's seat in a `StepBatcher`: its `denoise`, cancel flag and deadline."""

    def __init__(self, batcher: StepBatcher, deadline: float | None) -> None:
        super().__init__(deadline)
        self._batcher = batcher
        self._seated = True
        batcher._seat(self)

    def denoise(self, state: MaskedState, t: Any, request: Any) -> np.ndarray:
        """What the sampler calls: the head's logits for `state`, computed in a shared batch."""
        self.check()
        tokens = np.atleast_2d(np.asarray(state.tokens))
        call = _Call(tokens, float(np.asarray(t).reshape(-1)[0]), state, request)
        self._batcher._submit(call)
        while not call.done.wait(0.05):
            try:
                self.check()
            except BaseException:
                self._batcher._withdraw(call)
                raise
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def done(self) -> None:
        """The sampler has finished: free the seat (decoding and answering need no model)."""
        if self._seated:
            self._seated = False
            self._batcher._unseat(self)


class StepBatcher:
    """Joins the `denoise` calls of concurrent generations of one head into one model call.

    `on_batch(rows)` is told the number of rows of every model call (for the metrics).
    """

    def __init__(self, head: Any, *, max_rows: int = 256, gather_s: float = 0.02,
                 on_batch: Callable[[int], None] | None = None) -> None:
        if not can_batch_rows(head):
            raise TypeError(f"{type(head).__name__} cannot batch rows of different requests")
        self.head = head
        self.many = isinstance(head, BatchesGenerations)
        self.pad_id = pad_id_of(head)
        self.max_rows = max_rows
        self.gather_s = gather_s
        self.on_batch = on_batch
        self.calls = 0  # model calls made, for tests and benchmarks
        self._last_call_s = 0.0
        self._lock = threading.Condition()
        self._seated: set[Member] = set()
        self._pending: list[_Call] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="aios-step-batcher", daemon=True)
        self._thread.start()

    @property
    def seated(self) -> int:
        """Generations holding a seat (what the next model call may wait for)."""
        return len(self._seated)

    def member(self, deadline: float | None = None) -> Member:
        """A seat for one generation, from now until its `leave`: while seated, each batch
        waits (up to `gather_s`) for its call, so take it once the generation may start."""
        return Member(self, deadline)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for call in self._pending:
                call.error = Cancelled("the server is shutting down")
                call.done.set()
            self._pending.clear()
            self._lock.notify_all()
        self._thread.join(timeout=5)

    # -- called by members ---------------------------------------------------------------------

    def _seat(self, member: Member) -> None:
        with self._lock:
            self._seated.add(member)

    def _unseat(self, member: Member) -> None:
        with self._lock:
            self._seated.discard(member)
            self._lock.notify_all()  # the batch may now be complete

    def _submit(self, call: _Call) -> None:
        with self._lock:
            if self._closed:
                raise Cancelled("the server is shutting down")
            self._pending.append(call)
            self._lock.notify_all()

    def _withdraw(self, call: _Call) -> None:
        with self._lock:
            if call in self._pending:
                self._pending.remove(call)

    # -- the batching thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                # Wait (briefly) until every seated generation has asked: one call for all.
                # Briefly = `gather_s`, or a quarter of the last model call if that is longer:
                # a straggler left out costs a whole call of its own later.
                until = time.monotonic() + max(self.gather_s, 0.25 * self._last_call_s)
                while (len(self._pending) < len(self._seated) and not self._closed
                       and (left := until - time.monotonic()) > 0):
                    self._lock.wait(left)
                batch, rows = [], 0
                for call in list(self._pending):
                    if batch and rows + len(call.tokens) > self.max_rows:
                        break
                    batch.append(call)
                    rows += len(call.tokens)
                for call in batch:
                    self._pending.remove(call)
            if batch:
                began = time.monotonic()
                self._evaluate(batch)
                self._last_call_s = time.monotonic() - began

    def _evaluate(self, batch: list[_Call]) -> None:
        try:
            if self.many:
                answers = self.head.denoise_many([(c.state, c.t, c.request) for c in batch])
            else:
                answers = self._stack_rows(batch)
            self.calls += 1
            if self.on_batch is not None:
                self.on_batch(sum(len(c.tokens) for c in batch))
            for call, answer in zip(batch, answers, strict=True):
                call.result = answer
        except Exception as exc:  # noqa: BLE001 - every waiting generation hears of it
            for call in batch:
                call.error = exc
        for call in batch:
            call.done.set()

    def _stack_rows(self, batch: list[_Call]) -> list[np.ndarray]:
        """One `denoise` over the rows of every call, left-padded to one width, each row at
        its own time; each call's logits."""
        width = max(c.tokens.shape[1] for c in batch)
        tokens = np.concatenate([
            np.pad(c.tokens, ((0, 0), (width - c.tokens.shape[1], 0)),
                   constant_values=self.pad_id) for c in batch])
        times = np.concatenate([np.full(len(c.tokens), c.t, dtype=np.float32)
                                for c in batch])
        state = replace(batch[0].state, tokens=tokens, rows=None, on_prefix=None)
        logits = np.asarray(self.head.denoise(state, times, batch[0].request))
        ends = np.cumsum([len(c.tokens) for c in batch])
        return [logits[end - len(c.tokens):end, width - c.tokens.shape[1]:]
                for c, end in zip(batch, ends, strict=True)]


class Admission:
    """A bounded queue in front of `max_active` slots (used from the event loop only)."""

    def __init__(self, max_active: int, max_queue: int) -> None:
        if max_active < 1 or max_queue < 0:
            raise ValueError("max_active must be >= 1 and max_queue >= 0")
        self.max_active = max_active
        self.max_queue = max_queue
        self.active = 0
        self.waiting = 0
        self._free = asyncio.Semaphore(max_active)
        self._seconds = 1.0  # a running mean of how long a generation holds its slot

    @property
    def depth(self) -> int:
        """Requests waiting for a slot."""
        return self.waiting

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead, at the observed pace."""
        ahead = (self.waiting + 1) / self.max_active
        return max(1, int(np.ceil(ahead * self._seconds)))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the `max_active` slots; `Overloaded` at once when the queue is full."""
        if self.active >= self.max_active and self.waiting >= self.max_queue:
            raise Overloaded(self.retry_after())
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.active -= 1
            self._free.release()
            self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - started)
