"""Shared helpers: in-process plugins built from plain functions, and toy heads and samplers."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import aios
from aios.hookspecs import CONTRACT_VERSION
from aios.registry import Registry
from aios.runtime.devices import Device


def make_plugin(contract: str | None = CONTRACT_VERSION,
                **hooks: Callable[..., Any]) -> types.ModuleType:
    """A plugin module implementing the given hooks (keyword = hook name)."""
    module = types.ModuleType("test_plugin")
    if contract is not None:
        module.AIOS_CONTRACT_VERSION = contract
    for hook_name, function in hooks.items():
        setattr(module, hook_name, aios.hookimpl(function))
    return module


def registering(kind_hook: str, *entries: tuple[str, Any, dict[str, Any]]) -> dict[str, Any]:
    """Hooks for `make_plugin` that register each (name, factory, keywords) under one hook."""

    def hook(register: Callable[..., None]) -> None:
        for name, factory, keywords in entries:
            register(name, factory, **keywords)

    return {kind_hook: hook}


class NoisyHead:
    """Continuous toy head: starts from seeded noise; the 'model' predicts `target`."""

    modality, family = "toy", "continuous"

    def __init__(self, size: int = 4, target: float = 2.0) -> None:
        self.size = size
        self.target = target

    def initial_state(self, request: aios.GenerationRequest, rng: np.random.Generator) -> Any:
        return rng.normal(size=self.size)

    def denoise(self, state: Any, t: Any, request: aios.GenerationRequest) -> Any:
        return np.full_like(state, self.target)

    def decode(self, state: Any, request: aios.GenerationRequest) -> Any:
        return {"state": state, "request": request}


class HalfwaySampler:
    """Continuous toy sampler: each step moves the state halfway to the prediction."""

    family = "continuous"

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = fraction

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        for step in range(num_steps):
            state = state + self.fraction * (denoise(state, step) - state)
            if callback:
                callback(step, num_steps, state)
        return state


class DiscreteSampler:
    """A discrete toy sampler, to test family mismatches."""

    family = "discrete"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        return state


class TagConditioner:
    """Appends its tag to the request context, so tests can see order and options."""

    def __init__(self, tag: str = "x") -> None:
        self.tag = tag

    def condition(self, request, context):
        return request.with_context(self.tag)


def toy_registry() -> Registry:
    registry = Registry()
    hooks: dict[str, Any] = {}
    hooks |= registering("aios_register_heads", ("noisy", NoisyHead, {"family": "continuous"}))
    hooks |= registering(
        "aios_register_samplers",
        ("halfway", HalfwaySampler, {"family": "continuous", "priority": 10}),
        ("still", DiscreteSampler, {"family": "discrete", "priority": 20}),
    )
    hooks |= registering("aios_register_conditioners", ("tag", TagConditioner, {}))
    registry.add_plugin(make_plugin(**hooks), name="toys", distribution="aios-toys", version="1.2")
    assert not registry.failures, registry.failures
    return registry


@pytest.fixture
def toys() -> Registry:
    return toy_registry()


class WordsEmbedder:
    """A toy text embedder: hashed bag of lower-case words, so texts sharing words are close."""

    name = "words"
    dim = 64

    def embed(self, texts, *, progress=False):
        from aios.memory.embedding import embed_in_batches

        def one_batch(batch):
            out = np.zeros((len(batch), self.dim), np.float32)
            for row, text in enumerate(batch):
                for word in text.lower().replace(".", " ").replace("?", " ").split():
                    out[row, sum(map(ord, word)) * 31 % self.dim] += 1.0
            return out

        return embed_in_batches(texts, one_batch, dim=self.dim, batch_size=8, progress=progress,
                                name=self.name)


def with_words_embedder(registry: Registry) -> Registry:
    """`registry` plus the toy `words` embedder (and nothing else), for memory tests."""
    registry.add_plugin(make_plugin(**registering("aios_register_embedders",
                                                  ("words", WordsEmbedder, {"priority": 99}))),
                        name="words", distribution="aios-test-words", version="1")
    assert "words" in registry.names("embedder"), registry.failures
    return registry


class EchoHead:
    """A text toy head whose output shows the prompt and the passages it was given."""

    modality, family = "text", "continuous"

    def initial_state(self, request, rng):
        return np.zeros(1)

    def denoise(self, state, t, request):
        return state

    def decode(self, state, request):
        return f"{request.prompt} [{' | '.join(p.text for p in request.context)}]"


class SteadySampler:
    """A continuous toy sampler that asks the head once."""

    family = "continuous"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        return denoise(state, 0)


def memory_registry() -> Registry:
    """The core's own plugin (reference store, memory conditioner), the `words` embedder, and
    a text toy head that echoes what memory it got."""
    from aios import builtin

    registry = with_words_embedder(Registry())
    registry.add_plugin(builtin, name="core", distribution="aios", version="0")
    hooks = registering("aios_register_heads", ("echo", EchoHead, {"family": "continuous"}))
    hooks |= registering("aios_register_samplers",
                         ("steady", SteadySampler, {"family": "continuous"}))
    registry.add_plugin(make_plugin(**hooks), name="echo", distribution="d", version="1")
    assert not registry.failures, registry.failures
    return registry


#: Devices `fake_devices` can pretend are present (no torch, no hardware needed).
FAKE_CPU = Device("cpu", "test CPU", ("float32", "bfloat16", "float16"))
FAKE_GPU = Device("cuda:0", "test GPU", ("float32", "bfloat16", "float16"))


@pytest.fixture
def fake_devices(monkeypatch):
    """``fake_devices(*found, bfloat16=None)``: the runtime selection sees exactly the devices
    `found` (a GPU may be present when there is more than one), on a CPU whose bfloat16
    feature is `bfloat16` (None: a CPU without one)."""
    import aios.runtime.devices as devices_module
    from aios.runtime import selection as selection_module

    def use(*found: Device, bfloat16: str | None = None) -> None:
        monkeypatch.setattr(selection_module, "cpu_bfloat16_feature", lambda: bfloat16)
        monkeypatch.setattr(selection_module, "list_devices", lambda: list(found))
        monkeypatch.setattr(selection_module, "gpu_may_be_present", lambda: len(found) > 1)
        monkeypatch.setattr(devices_module, "list_devices", lambda: list(found))
    return use

