"""The backbone's sizes and a model directory's `model.yaml`, apart from the torch code, so
that loading a model for inference (`aios.models.backbone_numpy`) never has to import torch."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from aios.errors import AiosError

MODEL_FILE = "model.yaml"


@dataclass(frozen=True)
class BackboneConfig:
    """Sizes of the backbone; saved beside the weights so a model directory rebuilds itself."""

    dim: int = 256
    depth: int = 6
    heads: int = 4
    ffn_dim: int | None = None  # None: about 8/3 * dim, rounded up to a multiple of 64
    max_len: int = 1024
    modalities: int = 4
    cond_dim: int | None = None  # width of condition vectors; None: no cross-attention
    rope_base: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.heads} heads of even width")
        for name in ("dim", "depth", "heads", "max_len", "modalities"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def hidden_ffn(self) -> int:
        return self.ffn_dim or 64 * math.ceil(8 * self.dim / 3 / 64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown backbone config keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def read_model_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """`model.yaml` of a model directory, checked for the keys every loader needs."""
    path = Path(directory) / MODEL_FILE
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise AiosError(f"{directory} is not an aios model directory (no {MODEL_FILE}); give "
                        "the directory a training recipe wrote") from None
    except yaml.YAMLError as exc:
        raise AiosError(f"{path} is malformed ({exc}); restore the model directory") from exc
    if not isinstance(config, dict) or "backbone" not in config or "heads" not in config:
        raise AiosError(f"{path} lacks `backbone` or `heads`; restore the model directory")
    return config
