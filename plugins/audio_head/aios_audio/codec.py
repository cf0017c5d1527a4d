"""Waveforms <-> frames for the continuous head, and the log-mel spectrogram the classifier
and the spectrogram pictures use.

One second at 16 kHz is 16,000 samples; frames of `frame` consecutive samples (400: 25 ms)
make a sequence of 40 frames, short enough for the shared backbone to attend over in full.
"""

from __future__ import annotations

import numpy as np


def to_frames(waveforms: np.ndarray, frame: int) -> np.ndarray:
    """float (count, samples) -> float32 (count, samples / frame, frame)."""
    waveforms = np.asarray(waveforms, dtype=np.float32)
    if waveforms.ndim != 2 or waveforms.shape[1] % frame:
        raise ValueError(f"waveforms must be (count, samples) with samples a multiple of the "
                         f"frame length {frame}, got {waveforms.shape}")
    return waveforms.reshape(len(waveforms), -1, frame)


def from_frames(frames: np.ndarray) -> np.ndarray:
    """float (count, frames, frame) -> float32 (count, samples), clipped to [-1, 1]."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (count, frames, frame), got {frames.shape}")
    return np.clip(frames.reshape(len(frames), -1), -1.0, 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular filters (n_mels, n_fft // 2 + 1) evenly spaced on the mel scale."""
    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(0.0, mel(np.array(sample_rate / 2)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel(waveforms: np.ndarray, sample_rate: int, *, n_fft: int = 512, hop: int = 250,
            n_mels: int = 32) -> np.ndarray:
    """float (count, samples) -> log-mel spectrograms (count, n_mels, samples / hop)."""
    waveforms = np.atleast_2d(np.asarray(waveforms, dtype=np.float32))
    samples = waveforms.shape[1]
    padded = np.pad(waveforms, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    starts = np.arange(samples // hop) * hop
    windows = padded[:, starts[:, None] + np.arange(n_fft)] * np.hanning(n_fft).astype(
        np.float32)
    power = np.abs(np.fft.rfft(windows, axis=-1)) ** 2
    mels = power @ mel_filterbank(sample_rate, n_fft, n_mels).T
    return np.log(mels + 1e-6).transpose(0, 2, 1).astype(np.float32)
