"""The model that ships with the pack: the text backbone unchanged, a light head, one second."""

import numpy as np
from aios_audio.evaluate import CLASSIFIER_DIR, prepare
from aios_audio.head import DEFAULT_MODEL, Audio, AudioHead
from aios_text.inference import DEFAULT_MODEL as TEXT_MODEL

from aios.engine import ArrowEngine
from aios.training.scoring import Classifier


def test_the_shipped_directory_holds_the_model_its_card_and_pictures():
    names = {f.name for f in DEFAULT_MODEL.iterdir()}
    assert {"model.yaml", "backbone.arrow", "audio.arrow", "MODEL_CARD.md", "samples.png",
            "loss.png"} <= names


def test_the_backbone_is_the_text_models_byte_for_byte():
    assert (DEFAULT_MODEL / "backbone.arrow").read_bytes() == \
        (TEXT_MODEL / "backbone.arrow").read_bytes()


def test_the_head_is_under_10m_parameters_and_the_backbone_holds_90_percent():
    counts = AudioHead().parameter_counts()
    assert counts["head"] < 10_000_000
    assert counts["backbone"] / (counts["backbone"] + counts["head"]) >= 0.9


def test_the_model_card_states_the_recipe_the_codec_and_its_limits():
    card = (DEFAULT_MODEL / "MODEL_CARD.md").read_text()
    assert "aios train audio" in card and "espeak-ng" in card and "Griffin-Lim" in card
    assert "**Limits.**" in card


def test_diffuse_returns_one_second_of_16_khz_float32():
    engine = ArrowEngine.from_config(overrides=["generate.modality=audio",
                                                "sampler.name=dpm-solver++"])
    audio = engine.diffuse("seven", modality="audio", num_steps=5, guidance_scale=3.0, seed=0)
    assert isinstance(audio, Audio) and audio.sample_rate == 16000
    assert audio.samples.shape == (16000,) and audio.samples.dtype == np.float32


def test_the_word_classifier_hears_most_generated_words():
    """The shipped head speaks its words: chance is 1/14; see the benchmark in the model card
    for the figures at more clips per word."""
    engine = ArrowEngine.from_config(overrides=["generate.modality=audio",
                                                "sampler.name=dpm-solver++"])
    words = list(AudioHead().classes)
    audio = engine.diffuse(words, modality="audio", num_steps=20, guidance_scale=3.0, seed=0)
    labels = np.arange(len(words))
    assert Classifier.load(CLASSIFIER_DIR).accuracy(prepare(audio.samples), labels) >= 0.5
