"""Scoring generated images and audio without a hub: a small classifier trained here, and the
Fréchet distance between real and generated examples in that classifier's feature space.

The Fréchet distance is the FID formula (Heusel et al. 2017) but over the penultimate layer of
a small convolutional classifier trained on the same data, not over Inception-v3 features: the
numbers compare samplers and models of this project with each other, never with published FIDs.
The classifier's accuracy on class-conditional samples says whether a sample shows its class.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from tqdm.auto import tqdm

from aios.errors import AiosError
from aios.io import write_atomic

CLASSIFIER_FILE = "classifier.arrow"
CLASSIFIER_CONFIG = "classifier.yaml"


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r^1/2 S_g S_r^1/2)^1/2) of two feature sets
    (rows are examples). The matrix square roots come from symmetric eigendecompositions, so the
    result is real and non-negative even for rank-deficient covariances of few samples."""
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"features must be (examples, dim) of one dim, got {real.shape} and "
                         f"{generated.shape}")
    if len(real) < 2 or len(generated) < 2:
        raise ValueError("the Fréchet distance needs at least two examples on each side")
    mean = np.sum((real.mean(0) - generated.mean(0)) ** 2)
    cov_r, cov_g = np.cov(real, rowvar=False), np.cov(generated, rowvar=False)
    root_r = _sqrtm_psd(cov_r)
    cross = _sqrtm_psd(root_r @ cov_g @ root_r)
    return float(max(0.0, mean + np.trace(cov_r) + np.trace(cov_g) - 2.0 * np.trace(cross)))


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


class SmallConvNet(nn.Module):
    """Two conv + pool stages and a 64-wide feature layer: enough to tell 28x28 garments or
    spectrograms of spoken words apart, small enough to train in minutes on one core."""

    def __init__(self, height: int, width: int, num_classes: int, features: int = 64) -> None:
        super().__init__()
        self.shape = (height, width)
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        flat = 32 * (height // 4) * (width // 4)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(flat, features), nn.ReLU())
        self.classify = nn.Linear(features, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"inputs must be (count, {self.shape[0]}, {self.shape[1]}), got "
                             f"{tuple(x.shape)}")
        return self.features(self.conv(x[:, None]))

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.embed(x))


class Classifier:
    """A trained `SmallConvNet` with the class names it predicts; inputs are float arrays
    (count, height, width) already in the form the pack's `prepare` made for training."""

    def __init__(self, net: SmallConvNet, classes: list[str]) -> None:
        self.net, self.classes = net.eval(), classes

    def _batches(self, inputs: np.ndarray, fn: Any) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(inputs), 256):
                x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + 256], np.float32))
                out.append(fn(x).numpy())
        return np.concatenate(out)

    def features(self, inputs: np.ndarray) -> np.ndarray:
        """The penultimate layer, the space the Fréchet distance is measured in."""
        return self._batches(inputs, self.net.embed)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return self._batches(inputs, lambda x: self.net(x).argmax(-1))

    def accuracy(self, inputs: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(inputs) == np.asarray(labels)))

    def score(self, real_features: np.ndarray, inputs: np.ndarray,
              labels: np.ndarray) -> dict[str, float]:
        """How generated `inputs` of classes `labels` fare: the accuracy of the classifier on
        them and their Fréchet distance to `real_features` (from `features` of real inputs)."""
        return {"accuracy": self.accuracy(inputs, labels),
                "frechet": frechet_distance(real_features, self.features(inputs))}

    def save(self, directory: str | os.PathLike[str], **facts: Any) -> Path:
        from aios.io import save_weights

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(directory / CLASSIFIER_FILE,
                     {k: v.detach().numpy().astype(np.float32)
                      for k, v in self.net.state_dict().items()})
        config = {"height": self.net.shape[0], "width": self.net.shape[1],
                  "classes": self.classes, **facts}
        text = yaml.safe_dump(config, sort_keys=False)
        write_atomic(directory / CLASSIFIER_CONFIG, lambda f: f.write(text.encode()))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Classifier:
        from aios.io import load_weights

        directory = Path(directory)
        try:
            config = yaml.safe_load((directory / CLASSIFIER_CONFIG).read_text())
        except FileNotFoundError:
            raise AiosError(f"no classifier in {directory}; train one first") from None
        net = SmallConvNet(int(config["height"]), int(config["width"]), len(config["classes"]))
        weights = load_weights(directory / CLASSIFIER_FILE)
        net.load_state_dict({name: torch.from_numpy(np.array(weights[name])) for name in weights})
        return cls(net, list(config["classes"]))


def train_classifier(inputs: np.ndarray, labels: np.ndarray, classes: list[str], *,
                     epochs: int = 2, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     progress: bool = True) -> Classifier:
    """Train a `SmallConvNet` with Adam on float inputs (count, height, width)."""
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if inputs.ndim != 3 or len(inputs) != len(labels):
        raise ValueError(f"inputs must be (count, height, width) with one label each, got "
                         f"{inputs.shape} and {labels.shape}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SmallConvNet(inputs.shape[1], inputs.shape[2], len(classes))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * int(np.ceil(len(inputs) / batch_size))
    net.train()
    with tqdm(total=steps, desc="classifier", disable=not progress, dynamic_ncols=True) as bar:
        for _ in range(epochs):
            order = rng.permutation(len(inputs))
            for start in range(0, len(inputs), batch_size):
                index = order[start:start + batch_size]
                loss = F.cross_entropy(net(torch.from_numpy(inputs[index])),
                                       torch.from_numpy(labels[index]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.update(1)
    return Classifier(net, list(classes))
