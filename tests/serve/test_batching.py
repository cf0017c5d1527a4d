"""The step batcher: rows of concurrent generations share model calls without changing them."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from aios.engine import ArrowEngine
from aios.protocols import GenerationRequest
from aios.serve.batching import (
    Admission,
    Cancelled,
    DeadlineExceeded,
    Overloaded,
    StepBatcher,
    can_batch_rows,
)
from aios.serve.generation import RequestHead, build_sampler, run_generation


@pytest.fixture(scope="module")
def engine() -> ArrowEngine:
    built = ArrowEngine.from_config(None, overrides=["head.name=text", "head.prefix_cache=false",
                                                     "sampler.name=low-confidence"])
    assert can_batch_rows(built.head)
    return built


def _state(engine: ArrowEngine, prompt: str, length: int):
    request = GenerationRequest(prompt=prompt, modality="text", num_steps=4,
                                options={"length": length})
    return engine.head.initial_state(request, np.random.default_rng(0)), request


def _in_threads(*calls):
    results: list = [None] * len(calls)

    def run(i, call):
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_rows_batched_with_other_requests_get_the_logits_they_get_alone(engine):
    short, request_a = _state(engine, "To be", 8)
    long, request_b = _state(engine, "The quick brown fox jumps over the lazy dog", 20)
    long = replace(long, tokens=np.repeat(np.atleast_2d(long.tokens), 2, axis=0))
    batcher = StepBatcher(engine.head, gather_s=5.0)  # waits for both: one call
    try:
        a, b = batcher.member(), batcher.member()
        got_a, got_b = _in_threads(lambda: a.denoise(short, 1.0, request_a),
                                   lambda: b.denoise(long, 0.4, request_b))
        assert batcher.calls == 1
    finally:
        batcher.close()
    alone_a = engine.head.denoise(short, 1.0, request_a)
    alone_b = engine.head.denoise(long, 0.4, request_b)
    assert got_a.shape == alone_a.shape and got_b.shape == alone_b.shape
    masked_a = np.atleast_2d(short.tokens) == short.mask_id
    masked_b = np.atleast_2d(long.tokens) == long.mask_id
    np.testing.assert_allclose(got_a[masked_a], alone_a[masked_a], atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(got_b[masked_b], alone_b[masked_b], atol=2e-4, rtol=1e-4)


def test_concurrent_generations_share_model_calls_and_keep_their_outputs(engine):
    prompts = ["To be or not", "The king", "Love is", "Once upon a time there"]

    def generate(prompt: str, batcher: StepBatcher | None):
        guard = batcher.member() if batcher else None
        head = RequestHead(engine.head, guard, threading.Lock()) if guard else engine.head
        if guard is None:
            return engine.diffuse(prompt, num_steps=8, seed=7, length=16)
        try:
            output, _ = run_generation(engine, head, build_sampler(engine, None, None, None),
                                       prompt, steps=8, seed=7, memory=None,
                                       options={"length": 16})
            return output
        finally:
            guard.leave()

    alone = [generate(p, None) for p in prompts]
    batcher = StepBatcher(engine.head, gather_s=1.0)
    try:
        together = _in_threads(*[lambda p=p: generate(p, batcher) for p in prompts])
        calls = batcher.calls
    finally:
        batcher.close()
    assert together == alone
    assert calls < 8 * len(prompts) / 2  # 32 model calls one by one; batched far fewer


def test_a_cancelled_generation_stops_and_frees_its_seat(engine):
    state, request = _state(engine, "To be", 8)
    batcher = StepBatcher(engine.head, gather_s=0.01)
    try:
        member = batcher.member()
        member.denoise(state, 1.0, request)
        assert len(batcher._seated) == 1
        member.cancelled.set()
        with pytest.raises(Cancelled):
            member.denoise(state, 0.5, request)
        member.leave()
        assert not batcher._seated
    finally:
        batcher.close()


def test_a_generation_past_its_deadline_stops(engine):
    state, request = _state(engine, "To be", 8)
    batcher = StepBatcher(engine.head)
    try:
        with pytest.raises(DeadlineExceeded):
            batcher.member(deadline=time.monotonic() - 1).denoise(state, 1.0, request)
    finally:
        batcher.close()


class _FailingOnce:
    """The text head, failing its first model call."""

    def __init__(self, head):
        self.head = head
        self.family, self.row_times, self.tokenizer = head.family, True, head.tokenizer
        self.failed = False

    def denoise(self, state, t, request):
        if not self.failed:
            self.failed = True
            raise RuntimeError("the model broke")
        return self.head.denoise(state, t, request)


def test_a_failing_model_call_fails_its_batch_and_the_next_one_works(engine):
    state, request = _state(engine, "To be", 8)
    batcher = StepBatcher(_FailingOnce(engine.head), gather_s=2.0)
    try:
        a, b = batcher.member(), batcher.member()
        outcomes = _in_threads(*[lambda m=m: _catch(lambda: m.denoise(state, 1.0, request))
                                 for m in (a, b)])
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        assert a.denoise(state, 1.0, request).shape[:2] == np.atleast_2d(state.tokens).shape
    finally:
        batcher.close()


def _catch(call):
    try:
        return call()
    except RuntimeError as exc:
        return exc


def test_admission_queues_up_to_its_bound_then_refuses_with_a_retry_hint():
    async def scenario():
        admission = Admission(max_active=1, max_queue=1)
        release = asyncio.Event()
        entered = []

        async def hold(name):
            async with admission.slot():
                entered.append(name)
                await release.wait()

        first = asyncio.create_task(hold("first"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(hold("second"))  # waits in the queue
        await asyncio.sleep(0.01)
        assert admission.active == 1 and admission.depth == 1
        with pytest.raises(Overloaded) as refused:
            async with admission.slot():
                pass
        assert refused.value.retry_after >= 1
        release.set()
        await asyncio.gather(first, second)
        assert entered == ["first", "second"] and admission.active == 0

    asyncio.run(scenario())
