"""The picture `aios generate --modality audio` writes beside the WAV: one clip's log-mel
spectrogram with its axes in seconds and Hz, a colour bar and a title, so that it can be read
without knowing how it was computed."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from aios.io import write_atomic
from aios_audio.codec import log_mel, mel_band_edges

#: The spectrogram's settings (those of `log_mel`, which the evaluation's classifier reads too).
N_FFT, HOP, N_MELS = 512, 250, 32


def write_spectrogram(path: Path, samples: np.ndarray, sample_rate: int, title: str) -> Path:
    """A PNG of the log-mel spectrogram of (samples,), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picture = log_mel(np.asarray(samples, np.float32)[None], sample_rate, n_fft=N_FFT, hop=HOP,
                      n_mels=N_MELS)[0]
    seconds = len(samples) / sample_rate
    centres = mel_band_edges(sample_rate, N_MELS)[1:-1]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    shown = ax.imshow(picture, origin="lower", aspect="auto", cmap="magma",
                      extent=(0.0, seconds, -0.5, N_MELS - 0.5))
    ticks = np.unique(np.linspace(0, N_MELS - 1, 6).round().astype(int))
    ax.set_yticks(ticks, [f"{centres[i]:,.0f}" for i in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel-spaced bands)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(shown, ax=ax).set_label("log power (natural log)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomic(path, lambda f: f.write(buffer.getvalue()))
    return path
