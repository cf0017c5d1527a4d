import numpy as np
import pytest
from aios_audio.codec import SpectralCodec, griffin_lim, istft, log_mel, stft

RATE = 16000


def tones(*hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return np.stack([np.sin(2 * np.pi * f * t) * np.hanning(len(t)) for f in hz]).astype(
        np.float32)


def test_stft_has_one_frame_per_hop_and_istft_inverts_it():
    waves = np.random.default_rng(0).uniform(-1, 1, (2, RATE)).astype(np.float32)
    spectra = stft(waves, 1000, 250)
    assert spectra.shape == (2, 64, 501) and spectra.dtype == np.complex64
    np.testing.assert_allclose(istft(spectra, 1000, 250, RATE), waves, atol=1e-4)


def spectral_error(waves: np.ndarray, target: np.ndarray) -> float:
    """Spectral convergence: ||  |S(waves)| - target || / || target ||."""
    return float(np.linalg.norm(np.abs(stft(waves, 1000, 250)) - target) / np.linalg.norm(target))


def test_griffin_lim_finds_a_waveform_with_the_given_magnitudes():
    waves = tones(220.0, 1300.0) + tones(3100.0)[[0, 0]] * 0.5
    target = np.abs(stft(waves, 1000, 250))
    random_phase = griffin_lim(target, 1000, 250, RATE, iterations=0)
    rebuilt = griffin_lim(target, 1000, 250, RATE, iterations=48)
    assert rebuilt.shape == waves.shape
    assert spectral_error(rebuilt, target) < 0.1 < spectral_error(random_phase, target)
    np.testing.assert_array_equal(rebuilt, griffin_lim(target, 1000, 250, RATE, iterations=48))


def test_the_fitted_codec_scales_training_spectra_to_mean_zero_and_unit_spread():
    waves = tones(300.0, 800.0, 2500.0)
    codec = SpectralCodec(RATE, RATE).fit(waves)
    frames = codec.encode(waves)
    assert frames.shape == (3, codec.frames, codec.bins) == (3, 64, 501)
    assert abs(frames.mean()) < 1e-4 and abs(frames.std() - 1.0) < 1e-3


def test_decoding_keeps_a_tone_at_its_pitch_and_peak_normalises_it():
    waves = tones(440.0, 2000.0)
    codec = SpectralCodec(RATE, RATE, n_fft=1000, hop=250, iterations=32).fit(waves)
    decoded = codec.decode(codec.encode(waves))
    assert decoded.shape == (2, RATE) and decoded.dtype == np.float32
    np.testing.assert_allclose(np.abs(decoded).max(axis=1), 1.0, atol=1e-6)
    peaks = np.abs(np.fft.rfft(decoded, axis=1)).argmax(axis=1)  # 1 Hz per bin for 1 s
    np.testing.assert_allclose(peaks, [440, 2000], atol=3)


def test_a_silent_clip_decodes_to_silence():
    codec = SpectralCodec(RATE, RATE, iterations=4).fit(tones(500.0))
    silent = codec.encode(np.zeros((1, RATE), dtype=np.float32))
    assert np.abs(codec.decode(silent)).max() < 1e-3


def test_the_codec_round_trips_through_its_settings():
    codec = SpectralCodec(RATE, RATE, n_fft=800, hop=200).fit(tones(500.0))
    assert SpectralCodec.from_settings({**codec.settings(), "classes": ["a"]}) == codec


@pytest.mark.parametrize("call, message", [
    (lambda c: c.encode(np.zeros((1, 8000))), "must be 16000 samples long"),
    (lambda c: c.decode(np.zeros((1, 80, 401))), r"must be \(count, 64, 501\)"),
])
def test_wrong_shapes_are_refused_with_the_expected_shape(call, message):
    with pytest.raises(ValueError, match=message):
        call(SpectralCodec(RATE, RATE))


def test_settings_of_a_waveform_model_ask_for_retraining():
    with pytest.raises(ValueError, match="raw waveforms; retrain it with `aios train audio`"):
        SpectralCodec.from_settings({"sample_rate": RATE, "frame": 400})


def test_impossible_windows_are_refused():
    with pytest.raises(ValueError, match="hop <= n_fft / 2"):
        SpectralCodec(RATE, RATE, n_fft=300, hop=200)
    with pytest.raises(ValueError, match="no multiple of the hop 300"):
        SpectralCodec(RATE, RATE, n_fft=1200, hop=300)


def test_a_low_tone_is_loudest_in_a_low_mel_band_and_a_high_one_higher():
    low, high = tones(300.0), tones(4000.0)
    mel_low, mel_high = log_mel(low, RATE), log_mel(high, RATE)
    assert mel_low.shape == (1, 32, 64)
    assert mel_low[0].mean(1).argmax() < mel_high[0].mean(1).argmax()
