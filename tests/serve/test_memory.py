"""The memory over HTTP: add, search, generation guided by it, and workers sharing it
read-only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from tests.serve.conftest import BASE, free_port, running

FACTS = ["The lighthouse keeper of Skerry Rock is named Morwenna Quill.",
         "Bread rises because yeast makes carbon dioxide.",
         "The river Tamsin floods every spring."]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("memory") / "store"


@pytest.fixture(scope="module")
def memory_server(store):
    with running(replace(BASE, memory=str(store), preload=("text", "embedding"))) as (url, _):
        yield url


def test_texts_added_over_http_are_found_by_meaning(memory_server):
    added = httpx.post(f"{memory_server}/v1/memory", json={"texts": FACTS}, timeout=120).json()
    assert len(added["ids"]) == 3 and added["count"] == 3
    found = httpx.post(f"{memory_server}/v1/memory/search",
                       json={"query": "who keeps the lighthouse?", "k": 2}, timeout=60).json()
    assert found["data"][0]["content"] == FACTS[0]
    assert found["data"][0]["score"] > found["data"][1]["score"]
    assert found["data"][0]["id"] == added["ids"][0]


def test_a_generation_with_memory_reports_what_it_retrieved(memory_server):
    httpx.post(f"{memory_server}/v1/memory", json={"texts": FACTS}, timeout=120)
    answer = httpx.post(f"{memory_server}/v1/completions", timeout=120, json={
        "prompt": "The lighthouse keeper of Skerry Rock is", "max_tokens": 12, "seed": 1,
        "memory": True}).json()
    retrieved = answer["aios"]["retrieved"]
    assert retrieved and retrieved[0]["text"] == FACTS[0]
    without = httpx.post(f"{memory_server}/v1/completions", timeout=120, json={
        "prompt": "The lighthouse keeper of Skerry Rock is", "max_tokens": 12, "seed": 1}).json()
    assert "aios" not in without
    assert answer["usage"]["prompt_tokens"] > without["usage"]["prompt_tokens"]  # the context


def test_a_server_without_a_store_says_how_to_give_one(server):
    response = httpx.post(f"{server}/v1/memory/search", json={"query": "x"}, timeout=30)
    assert response.status_code == 404 and "--memory" in response.json()["error"]["message"]


def test_a_read_only_store_refuses_writes_and_answers_searches(store, memory_server):
    httpx.post(f"{memory_server}/v1/memory", json={"texts": FACTS}, timeout=120)
    with running(replace(BASE, memory=str(store), read_only_memory=True,
                         preload=("embedding",))) as (url, _):
        refused = httpx.post(f"{url}/v1/memory", json={"texts": ["more"]}, timeout=60)
        assert refused.status_code == 403
        assert "read-only" in refused.json()["error"]["message"]
        found = httpx.post(f"{url}/v1/memory/search", json={"query": "bread yeast"},
                           timeout=60).json()
        assert found["data"][0]["content"] == FACTS[1]


def test_two_workers_share_one_store_read_only(store, memory_server):
    httpx.post(f"{memory_server}/v1/memory", json={"texts": FACTS}, timeout=120)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aios.cli", "serve", "--port", str(port), "--workers", "2",
         "--memory", str(store), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        ready = 0
        while ready < 6 and time.monotonic() < deadline:  # both workers (ready repeatedly)
            try:
                ready = ready + 1 if httpx.get(f"{url}/ready", timeout=5).status_code == 200 \
                    else 0
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert ready >= 6, "the workers did not become ready"
        for _ in range(4):  # connections spread over the workers; each finds the records
            with httpx.Client(timeout=60) as client:
                found = client.post(f"{url}/v1/memory/search",
                                    json={"query": "river flooding"}).json()
                assert found["data"][0]["content"] == FACTS[2]
        assert httpx.post(f"{url}/v1/memory", json={"texts": ["x"]},
                          timeout=60).status_code == 403
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
