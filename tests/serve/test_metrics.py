"""`/metrics`: Prometheus text with requests, latencies, tokens, queue depth and batch size."""

from __future__ import annotations

import re

import httpx


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert found, f"{sample} is missing from /metrics"
    return float(found.group(1))


def test_metrics_count_what_the_server_did(server):
    before = httpx.get(f"{server}/metrics", timeout=30).text
    answer = httpx.post(f"{server}/v1/completions", timeout=120, json={
        "prompt": "Love is", "max_tokens": 10, "seed": 1}).json()
    httpx.get(f"{server}/made/up/path", timeout=30)
    after = httpx.get(f"{server}/metrics", timeout=30)
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    ok = 'aios_requests_total{endpoint="/v1/completions",status="200"}'
    assert _value(text, ok) == (_value(before, ok) if ok in before else 0) + 1
    tokens = 'aios_generated_tokens_total{model="text"}'
    grew = _value(text, tokens) - (_value(before, tokens) if tokens in before else 0)
    assert grew == answer["usage"]["completion_tokens"]
    assert _value(text, 'aios_request_seconds_count{endpoint="/v1/completions"}') >= 1
    assert _value(text, 'aios_batch_rows_count{model="text"}') >= 1
    assert _value(text, 'aios_tokens_per_second_count{model="text"}') >= 1
    assert _value(text, 'aios_queue_depth{model="text"}') == 0
    assert _value(text, 'aios_active_generations{model="text"}') == 0
    assert _value(text, 'aios_requests_total{endpoint="other",status="404"}') >= 1
    assert "/made/up/path" not in text


def test_memory_without_a_store_is_a_400_saying_how_to_give_one(server):
    response = httpx.post(f"{server}/v1/completions", timeout=30, json={
        "prompt": "Love is", "max_tokens": 10, "memory": True})
    assert response.status_code == 400
    assert "--memory" in response.json()["error"]["message"]
