"""Scoring audio heads: a word classifier on log-mel spectrograms, trained on held-in rendered
clips, and the scores of generated clips in its eyes (`aios.training`: accuracy on word-
conditional samples, an intelligibility proxy, and the Fréchet distance in its feature space)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from aios.training import train_classifier
from aios_audio.codec import log_mel
from aios_audio.data import SAMPLE_RATE, ClipSet

#: The classifier shipped with the pack (trained by `train_word_classifier`).
CLASSIFIER_DIR = Path(__file__).with_name("models") / "classifier"


def prepare(waveforms: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Waveforms -> the classifier's inputs: log-mel spectrograms (count, 32, 64), with the
    same fixed scaling for every clip (a generated clip is judged like a real one)."""
    return (log_mel(waveforms, sample_rate) + 6.0) / 6.0


def train_word_classifier(train: ClipSet, heldout: ClipSet,
                          directory: str | os.PathLike[str] = CLASSIFIER_DIR, *,
                          epochs: int = 30, progress: bool = True) -> dict[str, Any]:
    """Train on `train`, score on `heldout` (renders never trained on), save; the metrics."""
    classifier = train_classifier(prepare(train.waveforms), train.labels, list(train.words),
                                  epochs=epochs, batch_size=32, progress=progress)
    accuracy = classifier.accuracy(prepare(heldout.waveforms), heldout.labels)
    classifier.save(directory, epochs=epochs, heldout_accuracy=accuracy,
                    clips=len(train.labels))
    return {"heldout_accuracy": accuracy, "directory": str(directory)}

