import shutil

import numpy as np
import pytest
from aios_audio.data import SAMPLE_RATE, ClipSet, render, split, to_clip

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


def test_a_clip_is_one_second_centred_and_peak_normalised():
    word = np.concatenate([np.zeros(500), 0.3 * np.sin(np.arange(4000) / 5), np.zeros(700)])
    clip = to_clip(word.astype(np.float32), SAMPLE_RATE)
    assert clip.shape == (SAMPLE_RATE,) and clip.dtype == np.float32
    assert np.abs(clip).max() == pytest.approx(1.0)
    loud = np.flatnonzero(np.abs(clip) > 0.02)
    assert abs((loud[0] + loud[-1]) / 2 - SAMPLE_RATE / 2) < 10


def test_a_clip_at_another_rate_is_resampled_to_16_khz():
    tone = np.sin(2 * np.pi * 440 * np.arange(22050 // 2) / 22050).astype(np.float32)
    clip = to_clip(tone, 22050)
    spectrum = np.abs(np.fft.rfft(clip))
    assert np.fft.rfftfreq(SAMPLE_RATE, 1 / SAMPLE_RATE)[spectrum.argmax()] == pytest.approx(
        440, abs=2)


def test_every_fifth_render_is_held_out_for_every_word():
    clips = ClipSet(np.zeros((20, 4), np.float32), np.tile(np.arange(2), 10), ("a", "b"))
    train, held = split(clips)
    assert len(held.labels) == 4 and len(train.labels) == 16
    assert sorted(held.labels.tolist()) == [0, 0, 1, 1]


@needs_espeak
def test_espeak_renders_a_word_as_audible_samples():
    samples, rate = render("seven", "en-us", 160, 50)
    assert rate > 8000 and len(samples) > rate // 5 and np.abs(samples).max() > 0.05
