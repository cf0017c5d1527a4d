"""The core's own plugins, the native backend and the shout example keep the plugin contract:
the conformance kits of `aios.testing` are their test."""

import sys
from pathlib import Path

import numpy as np
import pytest

from aios.memory import reference_store
from aios.memory.conditioner import MemoryConditioner
from aios.protocols import EngineContext, GenerationRequest
from aios.quant import ReferenceQuantizer
from aios.registry import FIRST_PARTY, default_registry
from aios.testing import (
    check_conditioner,
    check_embedder,
    check_head,
    check_quantizer,
    check_sampler,
    check_storage,
)
from conftest import WordsEmbedder

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aios-shout"


@pytest.fixture(scope="module")
def shout():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import aios_shout

        yield aios_shout
    finally:
        sys.path.remove(str(EXAMPLE))


def test_the_reference_storage_keeps_the_contract():
    check_storage(reference_store)


def test_the_reference_quantizer_keeps_the_contract():
    check_quantizer(ReferenceQuantizer)


def test_the_memory_conditioner_keeps_the_contract(tmp_path):
    embedder = WordsEmbedder()
    store = reference_store(str(tmp_path / "m"), embedder.dim)
    texts = ["the cat sat on the mat", "markets fell sharply"]
    store.add(embeddings=embedder.embed(texts), contents=texts,
              extra=['{"embedder": "words"}'] * 2)
    try:
        context = EngineContext(head=None, storage=store, embedder=embedder)
        request = GenerationRequest(prompt="where is the cat", modality="text", num_steps=2)
        check_conditioner(MemoryConditioner, request=request, context=context)
        assert MemoryConditioner().condition(request, context).context[0].text == texts[0]
    finally:
        store.close()


def test_the_toy_embedder_of_the_test_suite_keeps_the_contract():
    check_embedder(WordsEmbedder)


@pytest.mark.parametrize("kind", ["storage", "quantizer"])
def test_the_native_backend_keeps_the_contract(kind):
    registry = default_registry()
    if "native" not in registry.names(kind):
        pytest.skip("aios_native is not installed")
    {"storage": check_storage, "quantizer": check_quantizer}[kind](
        registry.get(kind, "native").factory)


def test_the_shout_example_keeps_the_contract(shout):
    check_sampler(shout.LeftToRight)
    check_head(shout.ShoutHead, prompt="Hello, plugins!")
    check_head(shout.ShoutHead, sampler=shout.LeftToRight(), prompt="Hello, plugins!")


def test_the_shout_head_runs_under_every_installed_discrete_sampler(shout):
    registry = default_registry()
    names = [n for n in registry.names("sampler", family="discrete")
             if registry.plugins[registry.get("sampler", n).plugin].distribution in FIRST_PARTY]
    if not names:
        pytest.skip("no discrete sampler installed")
    head = shout.ShoutHead()
    request = GenerationRequest(prompt="Hello, plugins!", modality="text", num_steps=4, seed=1)
    for name in names:
        rng = np.random.default_rng(1)
        state = registry.get("sampler", name).factory().sample(
            lambda s, t: head.denoise(s, t, request), head.initial_state(request, rng),
            num_steps=4, rng=rng)
        assert head.decode(state, request) == "HELLO, PLUGINS!", name
