"""The audio head as the engine sees it: a word in, one second of 16 kHz mono audio out.

Generation runs on `aios.models.ClassConditionalHead`: in NumPy (no torch; ``runtime: auto``
on a CPU), or in torch on the configured runtime's device and dtype (``runtime.name: torch``;
``auto`` beside a GPU). The pack adds its codec (spectra <-> samples) and the files the command
line writes: a WAV and a spectrogram picture.
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from aios.errors import AiosError
from aios.io import write_atomic
from aios.models import ClassConditionalHead
from aios.protocols import GaussianState, GenerationRequest
from aios.runtime import RuntimeChoice
from aios.training import write_grid_png
from aios_audio.codec import SpectralCodec, log_mel
from aios_audio.spectrogram import write_spectrogram

#: The model that ships with the pack (see its MODEL_CARD.md).
DEFAULT_MODEL = Path(__file__).with_name("models") / "default"


class Audio(NamedTuple):
    """A generation: float32 samples in [-1, 1] (samples,) or (count, samples), and their rate."""

    samples: np.ndarray
    sample_rate: int
    label: str = ""  # what was asked for (one clip's prompt), for the spectrogram's title


class AudioHead(ClassConditionalHead):
    """Word-conditional Gaussian diffusion on log-magnitude spectra; Griffin-Lim rebuilds the
    waveform.

    Options (config keys beside `head.name`): `model`, a model directory written by
    `aios train audio` (default: the shipped one). Prompts name a word ("seven"); a list of
    prompts generates a batch. `decode` returns `Audio(samples, sample_rate)`.
    """

    modality = "audio"
    name = "audio"
    output_suffix = ".wav"
    #: The shipped model (a recipe's `backbone_slot` reads the slots of installed heads).
    default_model = DEFAULT_MODEL

    def __init__(self, model: str = "", runtime: RuntimeChoice | None = None) -> None:
        path = Path(os.path.expanduser(model)) if model else DEFAULT_MODEL
        if not model and not (path / "model.yaml").exists():
            raise AiosError(f"the default audio model is missing from {path}; reinstall "
                            "aios-audio or give a model directory: --set head.model=DIR")
        super().__init__(path, runtime)
        try:
            self.codec = SpectralCodec.from_settings(self.settings)
        except (TypeError, ValueError) as error:
            raise AiosError(f"{path}: {error}") from None
        self.sample_rate = self.codec.sample_rate

    def decode(self, state: GaussianState, request: GenerationRequest) -> Audio:
        samples = self.codec.decode(state.x)
        single = not isinstance(request.prompt, (list, tuple))
        if single:
            return Audio(samples[0], self.sample_rate, str(request.prompt))
        return Audio(samples, self.sample_rate)

    def write(self, output: Audio, path: str | os.PathLike[str], *,
              rows: Sequence[str] | None = None) -> list[Path]:
        """A WAV of `output` (a batch one after the other, with short pauses) and a PNG of its
        spectrogram beside it (a batch as a grid, one row per name in `rows`)."""
        path = Path(path)
        samples = np.atleast_2d(np.asarray(output.samples, dtype=np.float32))
        gap = np.zeros((len(samples), output.sample_rate // 4), dtype=np.float32)
        joined = np.concatenate([samples, gap], axis=1).reshape(-1)[: -gap.shape[1]]
        write_wav(path, joined, output.sample_rate)
        picture = path.with_suffix(".png")
        write_spectrograms(picture, samples, output.sample_rate, rows, output.label)
        return [path, picture]


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV, written atomically."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    write_atomic(path, lambda f: f.write(buffer.getvalue()))


def read_wav(path: str | os.PathLike[str]) -> Audio:
    """A 16-bit mono WAV as float32 samples in [-1, 1] and its rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise AiosError(f"{path} is not 16-bit mono PCM")
        rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    return Audio(np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32767.0, rate)


def write_spectrograms(path: Path, samples: np.ndarray, sample_rate: int,
                       rows: Sequence[str] | None, label: str = "") -> None:
    """Log-mel spectrograms of (count, samples) clips: one clip as a figure with axes, colour
    bar and title; several (with `rows`, a labelled grid) side by side."""
    if rows is None and len(samples) == 1:
        what = f"'{label}'" if label else "a clip"
        write_spectrogram(path, samples[0], sample_rate,
                          f"log-mel spectrogram of {what} generated by aios "
                          f"({len(samples[0]) / sample_rate:.2f} s at {sample_rate:,} Hz)")
        return
    write_grid_png(path, log_mel(samples, sample_rate), rows, cell=(1.6, 1.0), origin="lower",
                   cmap="magma")
