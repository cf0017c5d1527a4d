"""Spoken words rendered offline by espeak-ng: the audio head's training data.

Nothing is downloaded and nothing is committed: the recipe renders every clip from text with
the `espeak-ng` program (Debian/Ubuntu: `apt-get install espeak-ng`), in many voices (accents
and voice variants), speeds and pitches, and keeps one second of 16 kHz mono audio per clip:
leading silence trimmed, the word centred, peak-normalised.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from aios.errors import AiosError

SAMPLE_RATE = 16000

#: The ten digits and four more words; a clip's label is its index here.
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
         "yes", "no", "up", "down")

#: espeak-ng voices (accent + voice variant) the renders cycle through.
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


@dataclass(frozen=True)
class ClipSet:
    """float32 waveforms (count, samples) at `sample_rate`, int64 labels, the words."""

    waveforms: np.ndarray
    labels: np.ndarray
    words: tuple[str, ...]
    sample_rate: int = SAMPLE_RATE


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise AiosError("the audio recipe renders its words with espeak-ng, which is not "
                        "installed; install it with `apt-get install espeak-ng` (Debian/Ubuntu)")
    return path


def render(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """One utterance as float32 samples in [-1, 1] and espeak-ng's sample rate."""
    result = subprocess.run([espeak_binary(), "-v", voice, "-s", str(speed), "-p", str(pitch),
                             "--stdout", word], capture_output=True, check=False, timeout=30)
    if result.returncode != 0 or not result.stdout:
        raise AiosError(f"espeak-ng failed to render {word!r} with voice {voice}: "
                        f"{result.stderr.decode(errors='replace').strip()}")
    with wave.open(io.BytesIO(result.stdout)) as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise AiosError("espeak-ng wrote audio other than 16-bit mono; update espeak-ng")
        rate = wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate


def to_clip(samples: np.ndarray, rate: int, length: int = SAMPLE_RATE) -> np.ndarray:
    """Resample to 16 kHz, cut the word out of its silence, centre it in `length` samples and
    scale its peak to 1 (a word longer than the clip keeps its first `length` samples)."""
    from math import gcd

    from scipy.signal import resample_poly

    if rate != SAMPLE_RATE:
        g = gcd(SAMPLE_RATE, rate)
        samples = resample_poly(samples, SAMPLE_RATE // g, rate // g).astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) > 0.02 * (np.abs(samples).max() + 1e-9))
    word = samples[loud[0]: loud[-1] + 1] if len(loud) else samples
    word = word[:length]
    clip = np.zeros(length, dtype=np.float32)
    start = (length - len(word)) // 2
    clip[start:start + len(word)] = word
    peak = np.abs(clip).max()
    return clip / peak if peak > 0 else clip


def render_words(words: Sequence[str] = WORDS, renders: int = 60, *, seed: int = 0,
                 progress: bool = True) -> ClipSet:
    """`renders` clips of every word, each with a voice, speed (120-220 words per minute) and
    pitch (20-80) drawn from `seed`."""
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    total = len(words) * renders
    with tqdm(total=total, desc="espeak-ng", disable=not progress, dynamic_ncols=True) as bar:
        for _ in range(renders):
            for label, word in enumerate(words):  # one of each word per round
                voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+" \
                        f"{VARIANTS[rng.integers(len(VARIANTS))]}"
                samples, rate = render(word, voice, int(rng.integers(120, 221)),
                                       int(rng.integers(20, 81)))
                clips.append(to_clip(samples, rate))
                labels.append(label)
                bar.update(1)
    return ClipSet(np.stack(clips), np.array(labels, dtype=np.int64), tuple(words))


def split(clips: ClipSet, every: int = 5) -> tuple[ClipSet, ClipSet]:
    """Training and held-out clips: every `every`-th render of each word is held out."""
    held = (np.arange(len(clips.labels)) // len(clips.words)) % every == every - 1
    part = [ClipSet(clips.waveforms[m], clips.labels[m], clips.words) for m in (~held, held)]
    return part[0], part[1]
