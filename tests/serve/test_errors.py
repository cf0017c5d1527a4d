"""Bad requests, overload, time limits, failures and disconnects: each answered in OpenAI's
error shape, never with a traceback, and the server answers the next request."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import replace
from urllib.parse import urlsplit

import httpx
import pytest

from tests.serve.conftest import BASE, running

PROMPT = {"model": "text", "prompt": "The king said", "max_tokens": 8, "seed": 1}
KEY = {"Authorization": "Bearer sesame"}  # the strict server's API key


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"] and "\n" not in error["message"]
    return error


def _still_serving(url: str, headers: dict[str, str] | None = None) -> None:
    answer = httpx.post(f"{url}/v1/completions", json=PROMPT, timeout=120, headers=headers)
    assert answer.status_code == 200 and answer.json()["choices"][0]["text"]


def _metric(url: str, name: str, model: str = "text") -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.search(rf'^{name}\{{model="{re.escape(model)}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_malformed_json_is_a_400(server):
    response = httpx.post(f"{server}/v1/completions", content=b'{"prompt": "unclosed',
                          headers={"Content-Type": "application/json"}, timeout=30)
    error = _error(response, 400)
    assert error["type"] == "invalid_request_error" and "JSON" in error["message"]
    _still_serving(server)


def test_an_unknown_model_is_a_404_naming_the_model_list(server):
    error = _error(httpx.post(f"{server}/v1/completions",
                              json={**PROMPT, "model": "gpt-17"}, timeout=30), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "/v1/models" in error["message"]


def test_an_unknown_adapter_is_a_404(server):
    error = _error(httpx.post(f"{server}/v1/completions",
                              json={**PROMPT, "model": "text:no-such-adapter"}, timeout=30), 404)
    assert "no-such-adapter" in error["message"]


def test_a_billion_max_tokens_is_a_400_with_the_models_limit(server):
    error = _error(httpx.post(f"{server}/v1/completions",
                              json={**PROMPT, "max_tokens": 10**9}, timeout=30), 400)
    assert error["param"] == "max_tokens" and "256" in error["message"]
    _still_serving(server)


def test_a_negative_temperature_is_a_422_naming_the_field(server):
    error = _error(httpx.post(f"{server}/v1/completions",
                              json={**PROMPT, "temperature": -1}, timeout=30), 422)
    assert error["param"] == "temperature"


def test_a_missing_prompt_is_a_422(server):
    error = _error(httpx.post(f"{server}/v1/completions", json={"model": "text"},
                              timeout=30), 422)
    assert error["param"] == "prompt" and "required" in error["message"]


def test_a_ten_megabyte_prompt_is_a_413(server):
    huge = {**PROMPT, "prompt": "x" * 10_000_000}
    error = _error(httpx.post(f"{server}/v1/completions", json=huge, timeout=60), 413)
    assert "limit" in error["message"]
    _still_serving(server)


def test_a_prompt_longer_than_the_model_is_a_400(server):
    long = {**PROMPT, "prompt": "word " * 400}
    error = _error(httpx.post(f"{server}/v1/completions", json=long, timeout=60), 400)
    assert "shorten" in error["message"]


def test_an_image_of_an_unknown_class_is_a_400(server):
    error = _error(httpx.post(f"{server}/v1/images/generations", json={"prompt": "banana"},
                              timeout=60), 400)
    assert "banana" in error["message"]


def test_an_unknown_endpoint_is_a_404_in_the_error_shape(server):
    _error(httpx.get(f"{server}/v1/nothing-here", timeout=30), 404)


def test_a_client_that_disconnects_mid_stream_frees_its_rows_at_once(server):
    body = {**PROMPT, "max_tokens": 120, "steps": 1000, "stream": True,
            "stream_format": "steps"}
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        assert _metric(server, "aios_batch_seats") == 1
    left = time.monotonic()  # closed after one of 1000 steps
    while _metric(server, "aios_batch_seats") and time.monotonic() - left < 10:
        time.sleep(0.05)
    assert _metric(server, "aios_batch_seats") == 0
    _still_serving(server)


def test_a_client_that_leaves_before_a_whole_answer_frees_its_rows_too(server):
    address = urlsplit(server)
    body = json.dumps({**PROMPT, "max_tokens": 120, "steps": 1000}).encode()
    with socket.create_connection((address.hostname, address.port), timeout=30) as raw:
        raw.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: test\r\n"
                    b"Content-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 60
        while _metric(server, "aios_batch_seats") == 0:
            assert time.monotonic() < deadline, "the generation never started"
            time.sleep(0.05)
    left = time.monotonic()  # the socket is closed, the answer never read
    while _metric(server, "aios_batch_seats") and time.monotonic() - left < 10:
        time.sleep(0.05)
    assert _metric(server, "aios_batch_seats") == 0
    _still_serving(server)


def test_a_failing_generation_is_a_500_and_the_server_goes_on(server_with_app):
    url, app = server_with_app
    head = app.state.aios.catalog.get(None, "text").engine.head

    def broken(*args, **kwargs):
        raise RuntimeError("the model broke")

    head.denoise = broken
    try:
        error = _error(httpx.post(f"{url}/v1/completions", json=PROMPT, timeout=60,
                                  headers=KEY), 500)
        assert "the model broke" in error["message"] and error["type"] == "server_error"
    finally:
        del head.denoise
    _still_serving(url, KEY)


@pytest.fixture(scope="module")
def server_with_app():
    """A server that only admits one generation, queues none, and wants an API key."""
    with running(replace(BASE, api_key="sesame", max_active=1, max_queue=0)) as served:
        url, app = served
        yield url, app


def test_a_wrong_api_key_is_a_401_and_the_right_one_passes(server_with_app):
    url, _ = server_with_app
    error = _error(httpx.post(f"{url}/v1/completions", json=PROMPT, timeout=30,
                              headers={"Authorization": "Bearer wrong"}), 401)
    assert error["type"] == "authentication_error" and "--api-key" in error["message"]
    _error(httpx.get(f"{url}/v1/models", timeout=30), 401)
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200
    _still_serving(url, KEY)


def test_a_full_queue_is_a_429_with_retry_after(server_with_app):
    url, _ = server_with_app
    body = {**PROMPT, "max_tokens": 120, "steps": 1000, "stream": True,
            "stream_format": "steps"}
    started, stop = threading.Event(), threading.Event()

    def hold_the_only_slot():
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120,
                          headers=KEY) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    started.set()
                if stop.is_set():
                    return

    holder = threading.Thread(target=hold_the_only_slot)
    holder.start()
    try:
        assert started.wait(60)
        response = httpx.post(f"{url}/v1/completions", json=PROMPT, timeout=30, headers=KEY)
        error = _error(response, 429)
        assert error["type"] == "rate_limit_error"
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        stop.set()
        holder.join(60)
    deadline = time.monotonic() + 10
    while _metric(url, "aios_batch_seats") and time.monotonic() < deadline:
        time.sleep(0.05)
    _still_serving(url, KEY)


def test_a_request_past_the_time_limit_is_a_504():
    with running(replace(BASE, timeout_s=0.5)) as (url, _):
        body = {**PROMPT, "max_tokens": 120, "steps": 1000}
        error = _error(httpx.post(f"{url}/v1/completions", json=body, timeout=60), 504)
        assert error["code"] == "timeout" and "0.5 s" in error["message"]
        streamed = httpx.post(f"{url}/v1/completions", json={**body, "stream": True},
                              timeout=60)
        assert '"code":"timeout"' in streamed.text
