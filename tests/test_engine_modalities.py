"""One engine for every installed modality: heads built on first use, routed by `modality`,
samplers matched to each head's family, one memory store, and backbones shared by content."""

from __future__ import annotations

import shutil
from typing import ClassVar

import numpy as np
import pytest

from aios.config import load_config
from aios.engine import ArrowEngine
from aios.errors import AiosError
from aios.models import ArrayBackbone
from aios.models.backbone_numpy import content_hash
from aios.registry import Registry
from conftest import HalfwaySampler, NoisyHead, make_plugin, registering


class LetterHead:
    """Discrete toy head of modality `letters`: every position becomes 'a'; counts its builds."""

    modality, family = "letters", "discrete"
    builds = 0

    def __init__(self) -> None:
        LetterHead.builds += 1

    def initial_state(self, request, rng):
        return np.zeros(3, dtype=np.int64)

    def denoise(self, state, t, request):
        return np.full_like(state, ord("a"))

    def decode(self, state, request):
        return "".join(map(chr, state)), request


class CommitAll:
    """Discrete toy sampler: takes the prediction in one step."""

    family = "discrete"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        return denoise(state, 0)


class SeeStore:
    """A conditioner that records which store the engine handed it, per modality."""

    seen: ClassVar[list] = []

    def condition(self, request, context):
        SeeStore.seen.append((request.modality, context.storage, context.head.modality))
        return request


class LoudToy(NoisyHead):
    """A second `toy` head with a higher priority than `noisy`, to test that config pins."""

    def denoise(self, state, t, request):
        return np.full_like(state, 100.0)


@pytest.fixture
def two_modalities() -> Registry:
    registry = Registry()
    hooks = registering("aios_register_heads",
                        ("noisy", NoisyHead, {"family": "continuous"}),
                        ("loud", LoudToy, {"family": "continuous", "priority": 50}),
                        ("letters", LetterHead, {"family": "discrete"}))
    hooks |= registering("aios_register_samplers",
                         ("halfway", HalfwaySampler, {"family": "continuous"}),
                         ("commit", CommitAll, {"family": "discrete"}))
    hooks |= registering("aios_register_conditioners", ("see", SeeStore, {}))
    registry.add_plugin(make_plugin(**hooks), name="toys", distribution="aios-toys",
                        version="1.0")
    assert not registry.failures, registry.failures
    LetterHead.builds = 0
    SeeStore.seen = []
    return registry


def engine(registry, *overrides):
    return ArrowEngine.from_config(load_config(overrides=overrides, registry=registry),
                                   registry=registry)


def test_another_modality_is_routed_to_its_head_built_on_first_use_only(two_modalities):
    e = engine(two_modalities, "head.name=noisy", "sampler.name=halfway")
    assert LetterHead.builds == 0  # nothing built before it is asked for
    text, _ = e.diffuse("p", modality="letters")
    assert text == "aaa"
    e.diffuse("q", modality="letters")
    assert LetterHead.builds == 1
    assert e.head_for("letters") is e.head_for("letters")


def test_each_head_gets_a_sampler_of_its_own_family(two_modalities):
    e = engine(two_modalities, "head.name=noisy", "sampler.name=halfway")
    assert isinstance(e.sampler_for(e.head_for("letters")), CommitAll)
    assert e.sampler_for(e.head) is e.sampler  # the configured one for the configured head
    out = e.diffuse("p", modality="toy", num_steps=1, seed=0)
    start = np.random.default_rng(0).normal(size=4)
    np.testing.assert_allclose(out["state"], start + 0.5 * (2.0 - start))


def test_the_configured_head_pins_its_modality_over_a_higher_priority_head(two_modalities):
    e = engine(two_modalities, "head.name=noisy", "sampler.name=halfway", "sampler.steps=30")
    out = e.diffuse("p", modality="toy")
    np.testing.assert_allclose(out["state"], 2.0, atol=1e-6)  # noisy's target, not loud's 100


def test_every_modality_sees_the_one_memory_store(two_modalities, tmp_path):
    from aios.memory import reference_store

    e = engine(two_modalities, "head.name=noisy", "sampler.name=halfway", "conditioners.0=see")
    e.storage = store = reference_store(str(tmp_path / "mem"), dim=4)
    try:
        e.diffuse("p", modality="toy")
        e.diffuse("p", modality="letters")
    finally:
        store.close()
    assert [(m, s is store, h) for m, s, h in SeeStore.seen] == [
        ("toy", True, "toy"), ("letters", True, "letters")]


def test_a_modality_no_installed_head_generates_names_the_pack_to_install(two_modalities):
    e = engine(two_modalities, "head.name=noisy", "sampler.name=halfway")
    with pytest.raises(AiosError, match="install the pack for 'audio'"):
        e.diffuse("p", modality="audio")


def _tiny_model_dir(path, seed):
    torch = pytest.importorskip("torch")
    from aios.models import Backbone, BackboneConfig, save_model_dir

    torch.manual_seed(seed)
    backbone = Backbone(BackboneConfig(dim=16, depth=1, heads=2, max_len=8))
    save_model_dir(path, backbone, {})
    return path


def test_backbones_with_the_same_content_share_one_copy_in_memory(tmp_path):
    first = _tiny_model_dir(tmp_path / "a", seed=0)
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    other = _tiny_model_dir(tmp_path / "b", seed=1)
    assert content_hash(first / "backbone.arrow") == content_hash(copy / "backbone.arrow")
    a = ArrayBackbone.load(first)
    assert ArrayBackbone.load(copy) is a
    assert ArrayBackbone.load(other) is not a
    x = np.ones((1, 2, 16), np.float32)
    np.testing.assert_array_equal(a(x, np.zeros(1, np.float32), 0),
                                  ArrayBackbone.load(copy)(x, np.zeros(1, np.float32), 0))


def test_one_engine_generates_text_images_and_sound_on_one_shared_backbone(tmp_path):
    pytest.importorskip("aios_text")
    pytest.importorskip("aios_image")
    pytest.importorskip("aios_audio")
    from aios.registry import default_registry

    config = load_config(overrides=["head.name=text", "head.length=8"],
                         registry=default_registry())
    with ArrowEngine.from_config(config) as e:
        text = e.diffuse("Once upon a time", num_steps=4, seed=0)
        image = e.diffuse("sneaker", modality="image", num_steps=3, seed=0)
        sound = e.diffuse("seven", modality="audio", num_steps=3, seed=0)
        heads = [e.head_for(m) for m in ("text", "image", "audio")]
    assert isinstance(text, str) and text
    assert np.asarray(image).shape == (28, 28)  # one Fashion-MNIST-sized image
    assert np.asarray(sound.samples).ndim == 1 and sound.samples.size > 0
    backbones = {id(h.model.backbone) for h in heads}
    assert len(backbones) == 1  # the image and audio packs ship the text model's backbone


def test_the_cli_writes_the_asked_modality_even_with_the_head_pinned_to_another(tmp_path):
    pytest.importorskip("aios_text")
    pytest.importorskip("aios_image")
    from aios.cli import app as cli

    out = tmp_path / "s.png"
    assert cli.main(["--set", "head.name=text", "generate", "--modality", "image", "sneaker",
                     "--steps", "3", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
