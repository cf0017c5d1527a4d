import numpy as np
import pytest
from aios_audio.codec import from_frames, log_mel, to_frames


def test_frames_round_trip_to_the_same_samples():
    waves = np.random.default_rng(0).uniform(-1, 1, (2, 16000)).astype(np.float32)
    frames = to_frames(waves, 400)
    assert frames.shape == (2, 40, 400)
    np.testing.assert_array_equal(from_frames(frames), waves)


def test_a_length_that_is_no_multiple_of_the_frame_is_refused():
    with pytest.raises(ValueError, match="multiple of the frame length 400"):
        to_frames(np.zeros((1, 1000)), 400)


def test_decoded_samples_are_clipped_to_the_unit_range():
    assert from_frames(np.full((1, 2, 3), 5.0)).max() == 1.0


def test_a_low_tone_is_loudest_in_a_low_mel_band_and_a_high_one_higher():
    t = np.arange(16000) / 16000
    low, high = (np.sin(2 * np.pi * f * t)[None] for f in (300, 4000))
    mel_low, mel_high = log_mel(low, 16000), log_mel(high, 16000)
    assert mel_low.shape == (1, 32, 64)
    assert mel_low[0].mean(1).argmax() < mel_high[0].mean(1).argmax()
