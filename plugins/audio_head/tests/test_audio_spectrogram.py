"""The spectrogram picture beside a generated WAV: readable on its own (axes in seconds and Hz,
colour bar, title), at a size a viewer shows."""

import numpy as np
from aios_audio.codec import mel_band_edges, mel_filterbank
from aios_audio.spectrogram import write_spectrogram
from matplotlib import image as mpimg


def test_the_hz_labels_are_the_centres_of_the_mel_bands_the_spectrogram_sums():
    rate, n_fft, n_mels = 16000, 512, 32
    centres = mel_band_edges(rate, n_mels)[1:-1]
    peaks = np.fft.rfftfreq(n_fft, 1 / rate)[mel_filterbank(rate, n_fft, n_mels).argmax(axis=1)]
    bin_width = rate / n_fft
    assert np.all(np.abs(peaks - centres) < bin_width)  # the peak is a bin next to the centre
    assert centres[0] > 0 and centres[-1] < rate / 2
    assert np.all(np.diff(centres) > 0)


def test_one_clip_becomes_a_figure_a_viewer_shows_at_a_readable_size(tmp_path):
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    path = write_spectrogram(tmp_path / "tone.png", tone, 16000, "a 1 kHz tone")
    picture = mpimg.imread(path)
    assert picture.shape[:2] == (360, 640)  # was 110 x 170 without axes
    # the axes' labels sit in white margins left of and below the plot
    assert (picture[:, :20, :3] > 0.99).mean() > 0.8 and (picture[-8:, :, :3] > 0.99).mean() > 0.8
    assert (picture[:, :20, :3] < 0.5).any()  # ... and some text is there
