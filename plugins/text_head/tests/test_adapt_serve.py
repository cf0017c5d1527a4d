"""The adapted model served: concurrent requests share each forward (`denoise_many` through
the server's step batcher) and get exactly the text they get one at a time."""

import threading

import pytest
from adapt_fixtures import tiny_materialized

from aios.engine import ArrowEngine
from aios.serve.batching import StepBatcher, can_batch_rows
from aios.serve.generation import RequestHead, build_sampler, run_generation


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    directory = tiny_materialized(tmp_path_factory.mktemp("tiny-adapted"))
    built = ArrowEngine.from_config(None, overrides=[
        "head.name=text", f"head.model={directory}", "head.length=12", "head.block_size=4"])
    assert getattr(built.sampler, "steps_per_block", False)  # the head's block-wise sampler
    return built


def _in_threads(*calls):
    results: list = [None] * len(calls)
    threads = [threading.Thread(target=lambda i=i, c=c: results.__setitem__(i, c()))
               for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_concurrent_requests_share_forwards_and_keep_their_text(engine):
    assert can_batch_rows(engine.head)
    prompts = ["w9 w10 w11", "w20", "w14 w15 w16 w17 w18", "w30 w31"]

    def generate(prompt, batcher):
        guard = batcher.member()
        head = RequestHead(engine.head, guard, threading.Lock())
        try:
            output, _ = run_generation(engine, head, build_sampler(engine, None, None, None),
                                       prompt, steps=4, seed=3, memory=None, options={})
            return output
        finally:
            guard.leave()

    before = engine.head.calls
    alone = [engine.diffuse(p, num_steps=4, seed=3) for p in prompts]
    alone_calls = engine.head.calls - before
    batcher = StepBatcher(engine.head, gather_s=1.0)
    try:
        together = _in_threads(*[lambda p=p: generate(p, batcher) for p in prompts])
        calls = batcher.calls
    finally:
        batcher.close()
    assert together == alone
    assert all(isinstance(text, str) and text for text in together)
    assert calls < alone_calls / 2  # one forward serves several requests


def test_a_request_for_a_sampler_the_model_cannot_use_is_a_400(engine):
    from aios.serve.errors import ApiError

    with pytest.raises(ApiError, match="block by block") as caught:
        build_sampler(engine, "low-confidence", None, None)
    assert caught.value.status == 400
