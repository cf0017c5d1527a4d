"""Scoring image heads: the Fashion-MNIST classifier this pack trains and ships, and the scores
of generated images in its eyes (`aios.training`: accuracy on class-conditional samples, Fréchet
distance in its feature space — not Inception FID)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from aios.training import train_classifier
from aios_image.data import load_dataset

#: The classifier shipped with the pack (trained by `train_image_classifier`).
CLASSIFIER_DIR = Path(__file__).with_name("models") / "classifier"


def prepare(images: np.ndarray) -> np.ndarray:
    """uint8 images -> the classifier's float inputs in [-1, 1]."""
    return np.asarray(images, dtype=np.float32) / 127.5 - 1.0


def train_image_classifier(directory: str | os.PathLike[str] = CLASSIFIER_DIR,
                           dataset: str = "fashion-mnist", *, epochs: int = 2,
                           progress: bool = True) -> dict[str, Any]:
    """Train on the data set's training split, score on its test split, save; the metrics."""
    train, test = load_dataset(dataset, "train"), load_dataset(dataset, "test")
    classifier = train_classifier(prepare(train.images), train.labels, list(train.classes),
                                  epochs=epochs, progress=progress)
    accuracy = classifier.accuracy(prepare(test.images), test.labels)
    classifier.save(directory, dataset=dataset, epochs=epochs, test_accuracy=accuracy)
    return {"test_accuracy": accuracy, "directory": str(directory)}

