"""Class-conditional Gaussian heads for generation, in NumPy (no torch at generation time).

`ArrayContinuousModel` is `aios.models.gaussian.ContinuousDiffusionModel` on top of
`backbone_numpy.ArrayBackbone` (the same weights, the same outputs). `ClassConditionalHead`
is everything an image or audio head shares as the engine sees it (`aios.protocols.Head`):
prompts name classes, the state starts as seeded noise, one model evaluation answers a
sampler's query, and with a guidance scale other than 1 both the labelled and the unlabelled
predictions are computed in one batch and returned as `Guided` for the sampler to combine. A
pack adds only its codec: `decode` (frames -> pixels or samples) and the classes' names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aios.errors import AiosError, UsageError
from aios.models.backbone_config import head_settings
from aios.models.backbone_numpy import ArrayBackbone, load_arrays, silu
from aios.protocols import GaussianState, GenerationRequest, Guided
from aios.schedules import schedule_from_config

#: The tensors of a continuous head's weight file (`aios.models.gaussian.ContinuousHead`).
HEAD_TENSORS = ("embed_in.0.weight", "embed_in.0.bias", "embed_in.2.weight", "embed_in.2.bias",
                "position", "label.weight", "project.0.weight", "project.0.bias",
                "project.2.weight", "project.2.bias")


class ArrayContinuousModel:
    """(noisy frames, t in [0, 1], labels) -> prediction per frame, like the torch model."""

    def __init__(self, backbone: ArrayBackbone, weights: dict[str, np.ndarray],
                 modality: int) -> None:
        missing = [name for name in HEAD_TENSORS if name not in weights]
        if missing:
            raise AiosError(f"the head's weights lack {missing}; restore the model directory")
        self.backbone, self.modality = backbone, modality
        self.w = {name: np.ascontiguousarray(weights[name], dtype=np.float32)
                  for name in HEAD_TENSORS}
        self.positions, dim = self.w["position"].shape
        self.features = self.w["embed_in.0.weight"].shape[1]
        if dim != backbone.config.dim:
            raise AiosError(f"the head is {dim} wide but the backbone {backbone.config.dim}; the "
                            "weight files belong to different models")

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def __call__(self, frames: np.ndarray, t: np.ndarray, labels: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 3 or frames.shape[1:] != (self.positions, self.features):
            raise ValueError(f"frames must be (batch, {self.positions}, {self.features}), got "
                             f"{frames.shape}")
        tokens = self._linear("embed_in.2", silu(self._linear("embed_in.0", frames)))
        tokens = tokens + self.w["position"]
        label = self.w["label.weight"][np.asarray(labels)][:, None]
        hidden = self.backbone(np.concatenate([label, tokens], axis=1),
                               np.asarray(t, dtype=np.float32), self.modality)
        return self._linear("project.2", silu(self._linear("project.0", hidden[:, 1:])))


def load_array_continuous_model(directory: str | os.PathLike[str], name: str
                                ) -> tuple[ArrayContinuousModel, dict[str, Any]]:
    """The NumPy model of head `name` and its settings from a model directory."""
    directory = Path(directory)
    settings = head_settings(directory, name)
    model = ArrayContinuousModel(ArrayBackbone.load(directory),
                                 load_arrays(directory / f"{name}.arrow"),
                                 int(settings["modality_id"]))
    return model, settings


@dataclass(frozen=True, eq=False)
class LabelledState(GaussianState):
    """A `GaussianState` that carries each row's class label (samplers keep the field)."""

    labels: np.ndarray | None = None


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


class ClassConditionalHead:
    """The engine-facing part of a continuous head trained on labelled classes.

    Subclasses set `modality` and define `decode`; the model directory's settings hold
    `classes` (names; a prompt names one of them, or an alias after a `/` in the name) and the
    training `schedule`, `prediction` and `num_train_timesteps`.
    """

    family = "continuous"
    modality = ""
    name = ""  # the head's name in the model directory
    #: The network runs in NumPy on the CPU (`ArrayContinuousModel`, no torch import: what
    #: ``runtime: auto`` takes on a CPU) or in torch on the runtime's device and dtype
    #: (`aios.models.gaussian.RuntimeContinuousModel`: what ``auto`` takes beside a GPU).
    runtimes = ("numpy", "torch")

    def __init__(self, directory: str | os.PathLike[str], runtime: Any = None) -> None:
        """`runtime`: the resolved `aios.runtime.RuntimeChoice` (None: numpy)."""
        self.model: Any
        if runtime is not None and runtime.name == "torch":
            from aios.models.gaussian import RuntimeContinuousModel

            self.model, self.settings = RuntimeContinuousModel.load(directory, self.name,
                                                                    runtime)
        else:
            self.model, self.settings = load_array_continuous_model(directory, self.name)
        self.classes: list[str] = list(self.settings["classes"])
        if len(self.classes) != int(self.settings["num_classes"]):
            raise AiosError(f"{directory}: {len(self.classes)} class names for "
                            f"{self.settings['num_classes']} classes; restore the model directory")
        self.schedule = schedule_from_config(self.settings["schedule"],
                                             int(self.settings["num_train_timesteps"]))
        self.prediction = str(self.settings["prediction"])
        self._lookup: dict[str, int] = {}
        for index, label in enumerate(self.classes):
            for alias in (label, *label.split("/")):
                self._lookup.setdefault(_normalise(alias), index)
        self.calls = 0  # model evaluations (a guided one counts once), for benchmarks

    def label(self, prompt: Any) -> int:
        """The class index a prompt names (case and punctuation do not matter)."""
        if isinstance(prompt, (int, np.integer)) and 0 <= prompt < len(self.classes):
            return int(prompt)
        key = _normalise(str(prompt))
        if key not in self._lookup:
            raise UsageError(f"{prompt!r} is not a class this {self.modality} model knows; "
                            f"prompt one of: {', '.join(self.classes)}")
        return self._lookup[key]

    def grid_rows(self, prompt: str) -> list[str]:
        """The classes a labelled grid shows: every class for `all` (or an empty prompt), else
        the comma-separated ones named."""
        if prompt.strip().lower() in ("", "all"):
            return list(self.classes)
        return [self.classes[self.label(p.strip())] for p in prompt.split(",")]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the shared backbone and of this head (for `aios plugins --verbose`)."""
        if not isinstance(self.model, ArrayContinuousModel):
            return self.model.parameter_counts()
        return {"backbone": sum(w.size for w in self.model.backbone.w.values()),
                "head": sum(w.size for w in self.model.w.values())}

    def initial_state(self, request: GenerationRequest,
                      rng: np.random.Generator) -> LabelledState:
        prompts = request.prompt if isinstance(request.prompt, (list, tuple)) else [
            request.prompt]
        labels = np.array([self.label(p) for p in prompts], dtype=np.int64)
        x = rng.standard_normal((len(labels), self.model.positions, self.model.features))
        return LabelledState(x.astype(np.float32), self.schedule, self.prediction,
                             labels=labels)

    def denoise(self, state: GaussianState, t: Any, request: GenerationRequest) -> Any:
        self.calls += 1
        labels = getattr(state, "labels", None)
        x = np.asarray(state.x, dtype=np.float32)
        if labels is None:
            raise TypeError("this head needs the LabelledState its initial_state returned")
        time = np.full(len(x), float(t) / self.schedule.num_train_timesteps, dtype=np.float32)
        scale = float(request.guidance_scale)
        if scale == 1.0:
            return self.model(x, time, labels)
        null = np.full_like(labels, len(self.classes))
        both = self.model(np.concatenate([x, x]), np.concatenate([time, time]),
                          np.concatenate([labels, null]))
        return Guided(both[: len(x)], both[len(x):], scale)

    def decode(self, state: GaussianState, request: GenerationRequest) -> Any:
        raise NotImplementedError
