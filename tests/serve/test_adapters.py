"""`model: "text:ADAPTER"` selects an adapter of the text model per request."""

from __future__ import annotations

from dataclasses import replace

import httpx
import numpy as np
import pytest

from aios.evolve.adapters import Adapter, AdapterInfo, AdapterStore
from tests.serve.conftest import BASE, running


@pytest.fixture(scope="module")
def adapted_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("adapters")
    rng = np.random.default_rng(0)
    rank, dim = 4, 192  # the shipped text model's width
    tensors = {f"blocks.{i}.attn.out.lora_{part}": rng.normal(size=shape).astype(np.float32)
               for i in range(6) for part, shape in (("a", (rank, dim)), ("b", (dim, rank)))}
    info = AdapterInfo("loud", "lora", 2, "default", sum(t.size for t in tensors.values()),
                       {"rank": rank, "alpha": 64.0}, {}, "a test adapter that changes a lot")
    AdapterStore(directory).save(Adapter(info, tensors))
    settings = replace(BASE, overrides=(f"evolve.adapters_dir={directory}",))
    with running(settings) as (url, _):
        yield url


def test_adapters_are_listed_as_text_models(adapted_server):
    models = httpx.get(f"{adapted_server}/v1/models", timeout=30).json()["data"]
    assert {"id": "text:loud", "kind": "adapter"}.items() <= next(
        m for m in models if m["id"] == "text:loud").items()


def test_a_request_naming_an_adapter_is_served_by_the_adapted_model(adapted_server):
    body = {"prompt": "The king said", "max_tokens": 24, "seed": 4}
    base = httpx.post(f"{adapted_server}/v1/completions", json={**body, "model": "text"},
                      timeout=120).json()
    adapted = httpx.post(f"{adapted_server}/v1/completions",
                         json={**body, "model": "text:loud"}, timeout=120).json()
    again = httpx.post(f"{adapted_server}/v1/completions", json={**body, "model": "text"},
                       timeout=120).json()
    assert adapted["model"] == "text:loud" and base["model"] == "text"
    assert adapted["choices"][0]["text"] != base["choices"][0]["text"]
    assert again["choices"][0]["text"] == base["choices"][0]["text"]  # the base is untouched
