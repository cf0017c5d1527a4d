"""The text head and embedders keep the plugin contract (`aios.testing`)."""

import pytest

from aios.registry import default_registry
from aios.testing import check_embedder, check_head


def test_the_text_head_keeps_the_contract():
    check_head(default_registry().get("head", "text").factory, prompt="Once upon a time")


def test_the_text_head_runs_under_the_shipped_default_sampler():
    registry = default_registry()
    sampler = registry.best("sampler", family="discrete")
    if sampler is None:
        pytest.skip("aios-samplers is not installed")
    check_head(registry.get("head", "text").factory, sampler=sampler.factory(),
               prompt="Once upon a time")


def test_the_text_backbone_embedder_keeps_the_contract():
    check_embedder(default_registry().get("embedder", "text-backbone").factory)


def test_the_minilm_embedder_keeps_the_contract():
    from aios_text.embedders import minilm_path

    if minilm_path() is None:
        pytest.skip("the MiniLM weights are not installed")
    check_embedder(default_registry().get("embedder", "minilm").factory)
