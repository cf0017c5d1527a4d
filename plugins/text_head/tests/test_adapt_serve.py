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


def test_the_http_api_serves_the_adapted_model(tmp_path_factory):
    """Through the app: a completion, a chat in the model's chat format (ChatML), and a
    `max_tokens` beyond the model's context refused with the limit."""
    from starlette.testclient import TestClient

    from aios.serve.app import create_app
    from aios.serve.settings import ServeSettings

    directory = tiny_materialized(tmp_path_factory.mktemp("tiny-served"))
    settings = ServeSettings(overrides=("head.name=text", f"head.model={directory}",
                                        "head.block_size=4"), preload=("text",))
    with TestClient(create_app(settings)) as client:
        done = client.post("/v1/completions", json={"model": "text", "prompt": "w9 w10",
                                                    "max_tokens": 8, "seed": 1})
        assert done.status_code == 200, done.text
        answer = done.json()
        assert answer["usage"]["completion_tokens"] >= 1
        assert answer["choices"][0]["text"].split()[0].startswith("w")
        chat = client.post("/v1/chat/completions", json={
            "model": "text", "max_tokens": 8,
            "messages": [{"role": "user", "content": "w9 w10"}]})
        assert chat.status_code == 200, chat.text
        too_long = client.post("/v1/completions", json={"model": "text", "prompt": "w9",
                                                        "max_tokens": 10**9})
        assert too_long.status_code == 400
        assert too_long.json()["error"]["param"] == "max_tokens"


def test_the_chat_format_is_chatml_with_the_default_system_turn(tmp_path_factory):
    from aios_text.adapt.head import DEFAULT_SYSTEM, BlockDiffusionTextHead

    head = BlockDiffusionTextHead(str(tiny_materialized(tmp_path_factory.mktemp("chat"))))
    assert head.chat_prompt([("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")]) == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert head.chat_prompt([("system", "Be brief."), ("user", "Hi")]).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
