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


#: The key of a head's settings in `model.yaml` naming its backbone slot: the row of the
#: backbone's modality embedding it conditions on.
SLOT_KEY = "modality_id"
#: Slots of model directories written before slots were recorded: text heads used 0.
LEGACY_SLOTS = {"text": 0}


def recorded_slots(directory: str | os.PathLike[str]) -> dict[str, int]:
    """The backbone slot of each head a model directory holds, by head name."""
    heads = read_model_config(directory).get("heads") or {}
    slots = {}
    for name, settings in heads.items():
        slot = (settings or {}).get(SLOT_KEY, LEGACY_SLOTS.get(name))
        if slot is not None:
            slots[name] = int(slot)
    return slots


def free_slot(modality: str, taken: dict[str, int], capacity: int) -> int:
    """The slot for `modality` on a backbone whose slots `taken` (head name -> slot) are in use:
    its own when it has one, else the lowest unused one. Why not a fixed number per modality:
    a new pack cannot know which numbers other packs picked; the backbone's heads record theirs."""
    if modality in taken:
        return taken[modality]
    used = set(taken.values())
    for slot in range(capacity):
        if slot not in used:
            return slot
    holders = ", ".join(f"{name}: {slot}" for name, slot in sorted(taken.items()))
    raise AiosError(f"the backbone's {capacity} modality slots are all taken ({holders}); train "
                    "a backbone with more (backbone.modalities) for another modality")


def head_settings(directory: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """The entry of continuous head `name` in a model directory's `model.yaml` (both the
    NumPy and the torch loaders read it)."""
    settings = read_model_config(directory)["heads"].get(name)
    if settings is None or settings.get("kind") != "gaussian":
        raise AiosError(f"{directory} holds no continuous head named {name!r}; train one with "
                        f"`aios train {name}`")
    return settings
