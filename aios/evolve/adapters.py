"""Adapters: small weight files that change what a trained model does, kept apart from it.

An adapter is an aios weight file (Arrow, like every model file) in an adapter directory, named
`NAME.arrow`; its metadata says what it is (`AdapterInfo`): the kind (`lora`, ...), the level of
the self-evolution ladder it belongs to (0 cheapest), the model directory it was trained on, its
sizes and the held-out scores that justified keeping it. Adapters are listed, loaded and deleted
by name; the model files are never touched, so dropping an adapter restores the model exactly.

LoRA (level 2) stores, for each adapted linear layer `W` (out, in) of the backbone, two factors
`NAME.lora_a` (rank, in) and `NAME.lora_b` (out, rank); the layer computes
`W x + scale * B A x`. Inference merges them once at load (`merge_lora`), so generation with an
adapter costs exactly what generation without one costs.

A side network (`sidenet`, level 1; `aios.models.sidenet`) stores, for each of the last blocks, a
bottleneck branch `blocks.N.side.down.weight` (hidden, dim) and `blocks.N.side.up.weight`
(dim, hidden); the NumPy backbone runs the branches it finds among its weights. `apply_adapter`
turns the backbone's weights into the adapted model's for either kind. This module imports no
torch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aios.errors import AiosError, WeightFileError
from aios.io import load_weights, save_weights

#: The backbone layers LoRA adapts: every attention and feed-forward projection.
LORA_TARGETS = ("attn.qkv", "attn.out", "ffn.gate_up", "ffn.down")
#: Where adapters live unless `evolve.adapters_dir` or $AIOS_ADAPTERS says otherwise.
ADAPTERS_ENV = "AIOS_ADAPTERS"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")
_INFO_KEY = "aios.adapter"


def default_adapters_dir() -> Path:
    return Path(os.environ.get(ADAPTERS_ENV, "~/.local/share/aios/adapters")).expanduser()


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter file says about itself."""

    name: str
    kind: str
    level: int
    base: str  # the model directory it was trained on
    parameters: int
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. rank, alpha
    metrics: Mapping[str, Any] = field(default_factory=dict)  # before/after scores
    domain: str = ""  # what it was trained on, for people


@dataclass(frozen=True)
class Adapter:
    info: AdapterInfo
    tensors: Mapping[str, np.ndarray]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AiosError(f"adapter name {name!r} is invalid: use lower case letters, digits and "
                        "- _ . + (starting with a letter or digit)")
    return name


class AdapterStore:
    """The adapters of one directory, by name."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_adapters_dir()

    def path(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}.arrow"

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.arrow") if _NAME.match(p.stem))

    def info(self, name: str) -> AdapterInfo:
        return _info(load_weights(self._existing(name)).metadata, self.path(name))

    def list(self) -> list[AdapterInfo]:
        return [self.info(name) for name in self.names()]

    def load(self, name: str) -> Adapter:
        weights = load_weights(self._existing(name))
        info = _info(weights.metadata, self.path(name))
        return Adapter(info, {k: np.array(weights[k], dtype=np.float32) for k in weights})

    def save(self, adapter: Adapter) -> Path:
        """Write atomically; an adapter of the same name is replaced."""
        path = self.path(adapter.info.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        return save_weights(path, dict(adapter.tensors),
                            metadata={_INFO_KEY: json.dumps(asdict(adapter.info))})

    def delete(self, name: str) -> None:
        self._existing(name).unlink()

    def _existing(self, name: str) -> Path:
        path = self.path(name)
        if not path.is_file():
            known = ", ".join(self.names()) or "none"
            raise AiosError(f"no adapter {name!r} in {self.directory} (adapters there: {known}); "
                            "`aios adapters list` shows them, `aios evolve` makes new ones")
        return path


def _info(metadata: Mapping[str, str], path: Path) -> AdapterInfo:
    try:
        data = json.loads(metadata[_INFO_KEY])
        return AdapterInfo(**data)
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightFileError(f"{path} is a weight file but not an adapter (its metadata lacks "
                              f"a valid {_INFO_KEY}: {exc}); delete it or move it out of the "
                              "adapter directory") from exc


def merge_lora(weights: Mapping[str, np.ndarray], adapter: Adapter,
               scale: float = 1.0) -> dict[str, np.ndarray]:
    """The backbone's weights with the adapter's low-rank updates added: W + s * alpha/r * B A.

    `scale` weighs the whole adapter (0 = off, 1 = as trained). Unknown layer names or factor
    shapes that do not fit the weights are refused: the adapter belongs to another model.
    """
    if adapter.info.kind != "lora":
        raise AiosError(f"adapter {adapter.info.name!r} is a {adapter.info.kind} adapter, not lora")
    rank = int(adapter.info.options["rank"])
    factor = scale * float(adapter.info.options.get("alpha", rank)) / rank
    merged = dict(weights)
    for key, a in adapter.tensors.items():
        if not key.endswith(".lora_a"):
            continue
        layer = key.removesuffix(".lora_a")
        target = f"{layer}.weight"
        b = adapter.tensors.get(f"{layer}.lora_b")
        if target not in weights or b is None:
            raise AiosError(f"adapter {adapter.info.name!r} adapts {layer!r}, which this model "
                            f"does not have; it was trained on {adapter.info.base}")
        w = weights[target]
        if b.shape[0] != w.shape[0] or a.shape[1] != w.shape[1] or a.shape[0] != b.shape[1]:
            raise AiosError(f"adapter {adapter.info.name!r} does not fit layer {layer!r} "
                            f"({b.shape} x {a.shape} vs {w.shape}); it was trained on "
                            f"{adapter.info.base}")
        merged[target] = (w + factor * (b @ a)).astype(np.float32)
    return merged


def merge_side(weights: Mapping[str, np.ndarray], adapter: Adapter,
               scale: float = 1.0) -> dict[str, np.ndarray]:
    """The backbone's weights plus the adapter's side branches (their output layer times
    `scale`); the NumPy backbone checks that each branch fits its block."""
    if adapter.info.kind != "sidenet":
        raise AiosError(f"adapter {adapter.info.name!r} is a {adapter.info.kind} adapter, "
                        "not sidenet")
    merged = dict(weights)
    for key, value in adapter.tensors.items():
        if not (key.startswith("blocks.") and ".side." in key):
            raise AiosError(f"adapter {adapter.info.name!r} holds {key!r}, which is not a side "
                            f"branch weight; it was trained on {adapter.info.base}")
        merged[key] = (value * scale if key.endswith(".up.weight") else value).astype(np.float32)
    return merged


#: How each adapter kind changes the backbone's weights, by the kind stored in its file.
APPLY = {"lora": merge_lora, "sidenet": merge_side}


def apply_adapter(weights: Mapping[str, np.ndarray], adapter: Adapter,
                  scale: float = 1.0) -> dict[str, np.ndarray]:
    """The adapted backbone's weights, for any kind in `APPLY`."""
    try:
        apply = APPLY[adapter.info.kind]
    except KeyError:
        raise AiosError(f"adapter {adapter.info.name!r} is of kind {adapter.info.kind!r}, which "
                        f"generation cannot apply (known: {', '.join(APPLY)}); delete it or "
                        "update aios") from None
    return apply(weights, adapter, scale)
