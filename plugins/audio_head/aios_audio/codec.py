"""Waveforms <-> the frames the continuous head diffuses: normalised log-magnitude spectra.

Diffusing the raw waveform left a small head with noise (speech samples are nearly white at the
scale of one 25 ms frame); the magnitude spectrogram is smooth and low-entropy, so a head of the
same size can learn it, and the phase it drops is rebuilt by Griffin-Lim. One second at 16 kHz
with a hop of 250 samples is 64 frames (+ one label token), short enough for the shared backbone
to attend over in full; the window of 4 hops (75% overlap) lets Griffin-Lim converge to a phase
that keeps the word intelligible (the word classifier scores rebuilt clips as it scores the
originals).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np


def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft).astype(np.float32)


def stft(waveforms: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """float (count, samples) -> complex64 (count, samples // hop, n_fft // 2 + 1); frame k is
    centred on sample k * hop (the signal is reflected at its ends)."""
    waveforms = np.atleast_2d(np.asarray(waveforms, dtype=np.float32))
    samples = waveforms.shape[1]
    if samples <= n_fft // 2:
        raise ValueError(f"a clip of {samples} samples is too short for a window of {n_fft}")
    padded = np.pad(waveforms, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    starts = np.arange(samples // hop) * hop
    windows = padded[:, starts[:, None] + np.arange(n_fft)] * _window(n_fft)
    return np.fft.rfft(windows, axis=-1).astype(np.complex64)


def istft(spectra: np.ndarray, n_fft: int, hop: int, samples: int) -> np.ndarray:
    """The inverse of `stft` (least-squares overlap-add): complex (count, frames, bins) ->
    float32 (count, samples)."""
    frames = np.fft.irfft(spectra, n=n_fft, axis=-1).astype(np.float32) * _window(n_fft)
    count, positions = frames.shape[:2]
    out = np.zeros((count, samples + n_fft), dtype=np.float32)
    for k in range(positions):
        out[:, k * hop: k * hop + n_fft] += frames[:, k]
    half = n_fft // 2
    return out[:, half: half + samples] / _overlap_norm(n_fft, hop, positions, samples)


@lru_cache(maxsize=8)
def _overlap_norm(n_fft: int, hop: int, positions: int, samples: int) -> np.ndarray:
    """The summed squared windows `istft` divides by: the same for every call with these sizes
    (Griffin-Lim calls it once per iteration), so it is computed once."""
    norm = np.zeros(samples + n_fft, dtype=np.float32)
    squared = _window(n_fft) ** 2
    for k in range(positions):
        norm[k * hop: k * hop + n_fft] += squared
    half = n_fft // 2
    norm = np.maximum(norm[half: half + samples], 1e-6)
    norm.flags.writeable = False  # shared between calls
    return norm


def griffin_lim(magnitudes: np.ndarray, n_fft: int, hop: int, samples: int, *,
                iterations: int = 64, momentum: float = 0.99, seed: int = 0) -> np.ndarray:
    """A waveform whose spectrogram magnitude is close to `magnitudes` (count, frames, bins):
    alternate projections between consistent spectrograms and the given magnitude, with the
    momentum term of Perraudin et al. (2013) that speeds convergence. Deterministic for a seed."""
    magnitudes = np.asarray(magnitudes, dtype=np.float32)
    rng = np.random.default_rng(seed)
    phase = np.exp(2j * np.pi * rng.random(magnitudes.shape)).astype(np.complex64)
    previous = np.zeros_like(phase)
    for _ in range(iterations):
        rebuilt = stft(istft(magnitudes * phase, n_fft, hop, samples), n_fft, hop)
        step = rebuilt - (momentum / (1.0 + momentum)) * previous
        phase = step / np.maximum(np.abs(step), 1e-8)
        previous = rebuilt
    return istft(magnitudes * phase, n_fft, hop, samples)


@dataclass(frozen=True)
class SpectralCodec:
    """Waveforms <-> (count, frames, bins) normalised log-magnitudes, values near [-1, 1].

    `offset` and `scale` are measured on the training clips (`fit`) and saved with the model,
    so generation decodes with the numbers it was trained with.
    """

    sample_rate: int
    samples: int
    n_fft: int = 1000
    hop: int = 250
    floor: float = 1e-3          # magnitudes below it are silence: log(floor) is the bottom
    offset: float = 0.0
    scale: float = 1.0
    iterations: int = 64         # Griffin-Lim iterations when decoding

    def __post_init__(self) -> None:
        if self.hop <= 0 or self.n_fft < 2 * self.hop:
            raise ValueError(f"need 0 < hop <= n_fft / 2 for Griffin-Lim, got n_fft "
                             f"{self.n_fft}, hop {self.hop}")
        if self.samples % self.hop:
            raise ValueError(f"a clip of {self.samples} samples is no multiple of the hop "
                             f"{self.hop}")

    @property
    def frames(self) -> int:
        return self.samples // self.hop

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def log_magnitude(self, waveforms: np.ndarray) -> np.ndarray:
        return np.log(np.abs(stft(waveforms, self.n_fft, self.hop)) + self.floor)

    def fit(self, waveforms: np.ndarray) -> SpectralCodec:
        """This codec with `offset` and `scale` that map `waveforms`' log-magnitudes to mean 0
        and standard deviation 1."""
        values = self.log_magnitude(waveforms)
        return SpectralCodec(**{**asdict(self), "offset": float(values.mean()),
                                "scale": float(values.std() + 1e-6)})

    def encode(self, waveforms: np.ndarray) -> np.ndarray:
        waveforms = np.atleast_2d(np.asarray(waveforms, dtype=np.float32))
        if waveforms.shape[1] != self.samples:
            raise ValueError(f"clips must be {self.samples} samples long, got "
                             f"{waveforms.shape[1]}")
        return ((self.log_magnitude(waveforms) - self.offset) / self.scale).astype(np.float32)

    def decode(self, frames: np.ndarray) -> np.ndarray:
        """(count, frames, bins) -> float32 waveforms (count, samples), peak-normalised like
        the training clips (a silent clip stays silent)."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 3 or frames.shape[1:] != (self.frames, self.bins):
            raise ValueError(f"spectral frames must be (count, {self.frames}, {self.bins}), "
                             f"got {frames.shape}")
        magnitudes = np.maximum(np.exp(frames * self.scale + self.offset) - self.floor, 0.0)
        waves = griffin_lim(magnitudes, self.n_fft, self.hop, self.samples,
                            iterations=self.iterations)
        peak = np.abs(waves).max(axis=1, keepdims=True)
        return np.where(peak > 1e-4, waves / np.maximum(peak, 1e-4), waves).astype(np.float32)

    def settings(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> SpectralCodec:
        names = set(cls.__dataclass_fields__)
        missing = {"n_fft", "hop", "offset", "scale", "samples"} - set(settings)
        if missing:
            raise ValueError(f"the model's settings lack {sorted(missing)}: it was trained by "
                             "an aios-audio that diffused raw waveforms; retrain it with "
                             "`aios train audio`")
        return cls(**{k: v for k, v in settings.items() if k in names})


def mel_band_edges(sample_rate: int, n_mels: int) -> np.ndarray:
    """(n_mels + 2,) frequencies in Hz evenly spaced on the mel scale: band i rises from
    edge i, peaks at edge i + 1 (its centre) and falls to edge i + 2."""
    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    return hz(np.linspace(0.0, mel(np.array(sample_rate / 2)), n_mels + 2))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular filters (n_mels, n_fft // 2 + 1) evenly spaced on the mel scale."""
    edges = mel_band_edges(sample_rate, n_mels)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel(waveforms: np.ndarray, sample_rate: int, *, n_fft: int = 512, hop: int = 250,
            n_mels: int = 32) -> np.ndarray:
    """float (count, samples) -> log-mel spectrograms (count, n_mels, samples / hop)."""
    power = np.abs(stft(waveforms, n_fft, hop)) ** 2
    mels = power @ mel_filterbank(sample_rate, n_fft, n_mels).T
    return np.log(mels + 1e-6).transpose(0, 2, 1).astype(np.float32)
