"""Class-conditional Gaussian diffusion on the shared backbone: the network and its training.

Images and audio are both sequences of real-valued frames (patches, slices of waveform), so one
continuous head serves both: a frame projection in, the shared backbone, a projection back to
frames out. The class label enters as one extra token in front of the frames; a reserved
"no label" class lets the same network predict unconditionally, which is what classifier-free
guidance needs (the label is dropped to it for a share of the training examples). The codec that
turns data into frames belongs to each pack; this module never sees a pixel or a sample.

The NumPy twin used for generation is `aios.models.gaussian_numpy`; both read the same weight names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aios.models.backbone import Backbone
from aios.models.model_dir import save_model_dir
from aios.schedules import NoiseSchedule


class ContinuousHead(nn.Module):
    """The light, modality-specific part: frames and a label in, a prediction per frame out.

    - ``features``: values per frame (pixels per patch, samples per audio frame).
    - ``positions``: frames per example; each gets a learned position vector because the
      backbone's rotary positions are one-dimensional and images are not.
    - ``num_classes``: labels ``0 .. num_classes - 1``; label ``num_classes`` means "none".
    """

    def __init__(self, features: int, positions: int, dim: int, num_classes: int) -> None:
        super().__init__()
        for name, value in (("features", features), ("positions", positions),
                            ("num_classes", num_classes)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        self.features, self.num_classes = features, num_classes
        self.embed_in = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.position = nn.Parameter(torch.randn(positions, dim) * 0.02)
        self.label = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.label.weight, std=0.02)
        self.project = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, features))
        nn.init.zeros_(self.project[2].weight)  # starts by predicting 0 (the mean of v and eps)
        nn.init.zeros_(self.project[2].bias)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def embed(self, frames: Tensor, labels: Tensor) -> Tensor:
        """(batch, positions, features) and (batch,) labels -> (batch, 1 + positions, dim)."""
        tokens = self.embed_in(frames) + self.position
        return torch.cat([self.label(labels)[:, None], tokens], dim=1)

    def predict(self, hidden: Tensor) -> Tensor:
        """The backbone's output (label token included) -> the prediction for every frame."""
        return self.project(hidden[:, 1:])


class ContinuousDiffusionModel(nn.Module):
    """Backbone + continuous head: (noisy frames, t in [0, 1], labels) -> prediction."""

    def __init__(self, backbone: Backbone, head: ContinuousHead, modality: int) -> None:
        super().__init__()
        if not 0 <= modality < backbone.config.modalities:
            raise ValueError(f"modality id {modality} is outside the backbone's "
                             f"{backbone.config.modalities} modalities")
        self.backbone = backbone
        self.head = head
        self.modality = modality

    def forward(self, frames: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        if frames.dim() != 3 or frames.shape[-1] != self.head.features:
            raise ValueError(f"frames must be (batch, positions, {self.head.features}), got "
                             f"{tuple(frames.shape)}")
        hidden = self.backbone(self.head.embed(frames, labels), t, self.modality)
        return self.head.predict(hidden)


class RuntimeContinuousModel:
    """A `ContinuousDiffusionModel` on the torch runtime, called as `ArrayContinuousModel` is
    (host arrays in, host float32 predictions out), so `ClassConditionalHead` runs either.

    The network runs on the runtime's device and in its dtype, through `runtime.prepare`
    (compiled with ``runtime.compile: true``). The sampler's state stays on the host: one
    prediction is positions x features per row (a few thousand numbers), small beside a forward.
    """

    def __init__(self, model: ContinuousDiffusionModel, runtime: Any) -> None:
        self.device, self.dtype = torch.device(runtime.device), runtime.torch_dtype()
        self.network = runtime.prepare(model.to(device=self.device, dtype=self.dtype).eval())
        self.positions = int(model.head.position.shape[0])
        self.features = int(model.head.features)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], name: str,
             runtime: Any) -> tuple[RuntimeContinuousModel, dict[str, Any]]:
        """Head `name` of a model directory on `runtime`, and the head's settings."""
        model, settings = load_continuous_model(directory, name)
        return cls(model, runtime), settings

    def __call__(self, frames: np.ndarray, t: np.ndarray, labels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.as_tensor(np.asarray(frames, dtype=np.float32), device=self.device)
            time = torch.as_tensor(np.asarray(t, dtype=np.float32), device=self.device)
            label = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=self.device)
            out = self.network(x.to(self.dtype), time, label)
        return out.float().cpu().numpy()

    def parameter_counts(self) -> dict[str, int]:
        model = self.network
        return {"backbone": sum(p.numel() for p in model.backbone.parameters()),
                "head": sum(p.numel() for p in model.head.parameters())}


class GaussianDiffusionTask:
    """A `aios.training.loop.TrainTask`: denoise frames noised by a `NoiseSchedule`.

    ``data`` is (examples, positions, features) float32 in the codec's range (about [-1, 1]),
    ``labels`` (examples,) ints. The loss is the mean squared error of the epsilon or v
    prediction at a uniformly drawn training timestep; ``label_dropout`` of the labels become
    "none" so that the model also learns the unconditional prediction.
    """

    def __init__(self, name: str, data: np.ndarray, labels: np.ndarray,
                 schedule: NoiseSchedule, *, num_classes: int, prediction: str = "v",
                 batch_size: int = 64, label_dropout: float = 0.1, weight: float = 1.0) -> None:
        if prediction not in ("epsilon", "v"):
            raise ValueError(f"prediction must be 'epsilon' or 'v', got {prediction!r}")
        if data.ndim != 3 or len(data) != len(labels) or not len(data):
            raise ValueError(f"data must be (examples, positions, features) with one label per "
                             f"example, got {data.shape} and {len(labels)} labels")
        if not 0.0 <= label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
        self.name, self.weight = name, weight
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes, self.prediction = num_classes, prediction
        self.batch_size, self.label_dropout = batch_size, label_dropout
        self.alphas_cumprod = torch.tensor(np.array(schedule.alphas_cumprod), dtype=torch.float32)

    def batch(self, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        index = rng.integers(len(self.data), size=self.batch_size)
        return torch.from_numpy(self.data[index]), torch.from_numpy(self.labels[index])

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor],
             generator: torch.Generator) -> Tensor:
        x0, labels = batch
        steps = len(self.alphas_cumprod)
        timestep = torch.randint(0, steps, (len(x0),), generator=generator)
        drop = torch.rand(len(x0), generator=generator) < self.label_dropout
        labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        noise = torch.randn(x0.shape, generator=generator)
        bar = self.alphas_cumprod[timestep][:, None, None]
        alpha, sigma = bar.sqrt(), (1 - bar).sqrt()
        noisy = alpha * x0 + sigma * noise
        target = noise if self.prediction == "epsilon" else alpha * noise - sigma * x0
        return F.mse_loss(model(noisy, timestep.float() / steps, labels), target)


def save_continuous_model(directory: str | os.PathLike[str], model: ContinuousDiffusionModel,
                          name: str, settings: Mapping[str, Any], *,
                          backbone_file: str | os.PathLike[str] | None = None) -> Path:
    """Write backbone + head in float; `settings` (the codec's, the classes, the schedule) go
    into the head's entry of `model.yaml` with the sizes `aios.models.gaussian_numpy` needs.

    `backbone_file`: the frozen backbone's own weight file, copied byte for byte instead of
    writing the (dequantized) weights again, so a head trained on the shipped int8 backbone
    ships with exactly that backbone."""
    head = model.head
    entry = {"kind": "gaussian", "modality_id": model.modality, "features": head.features,
             "positions": int(head.position.shape[0]), "num_classes": head.num_classes,
             **settings}
    return save_model_dir(directory, model.backbone, {name: (head, entry)},
                          backbone_file=backbone_file)


def load_continuous_model(directory: str | os.PathLike[str],
                          name: str) -> tuple[ContinuousDiffusionModel, dict[str, Any]]:
    """The torch model of a model directory (float weights, int8 ones dequantized) and the
    head's settings: what evaluation and further training start from."""
    from aios.models.backbone_config import head_settings
    from aios.models.model_dir import load_float_backbone, load_float_module

    settings = head_settings(directory, name)
    backbone = load_float_backbone(directory)
    head = ContinuousHead(int(settings["features"]), int(settings["positions"]),
                          backbone.config.dim, int(settings["num_classes"]))
    load_float_module(Path(directory) / f"{name}.arrow", head)
    return ContinuousDiffusionModel(backbone, head, int(settings["modality_id"])).eval(), settings
