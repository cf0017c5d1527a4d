"""A Hugging Face checkpoint directory: `config.json`, safetensors (one file or shards listed by
`model.safetensors.index.json`) and `tokenizer.json`, read lazily and checked by name and shape.

Tensors are read one at a time through `safetensors.safe_open` (memory-mapped), so validating
every name and shape costs reading the headers only, before any weight is touched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from aios.models.families.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"


def read_config(directory: Path) -> dict[str, Any]:
    """`config.json` as a dict; a missing or unreadable one is a `CheckpointError`."""
    path = directory / "config.json"
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a directory: give a checkpoint directory "
                              "(config.json + *.safetensors) or a .gguf file")
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory} has no config.json: give the directory of a "
                              "Hugging Face checkpoint (config.json + *.safetensors)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); restore the file") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return config


class TensorFiles:
    """Tensors by name across one safetensors file or the shards an index lists."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.where: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        index = directory / INDEX_FILE
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{index} is not a safetensors index ({exc}); restore "
                                      "it or remove it if the checkpoint is one file") from exc
            files = sorted({directory / name for name in weight_map.values()})
        else:
            files = sorted(directory.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{directory} holds no .safetensors files: convert the "
                                  "checkpoint to safetensors (PyTorch .bin files are not read)")
        for file in files:
            if not file.exists():
                raise CheckpointError(f"{index} lists {file.name}, which is missing: download "
                                      "every shard of the checkpoint")
            try:
                with safe_open(file, framework="pt") as f:
                    for name in f.keys():
                        self.where[name] = file
                        self.shapes[name] = tuple(f.get_slice(name).get_shape())
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{file} is not a readable safetensors file ({exc}); "
                                      "download it again") from exc

    def get(self, name: str) -> torch.Tensor:
        if name not in self.where:
            raise CheckpointError(f"{self.directory}: the checkpoint lacks the tensor {name!r}")
        with safe_open(self.where[name], framework="pt") as f:
            return f.get_tensor(name)

    def check(self, expected: Mapping[str, tuple[int, ...]], optional: set[str]) -> None:
        """Every expected name present with its shape; the first problem is raised, named."""
        for name, shape in expected.items():
            if name not in self.shapes:
                if name in optional:
                    continue
                raise CheckpointError(
                    f"{self.directory}: the checkpoint lacks the tensor {name!r} (shape "
                    f"{list(shape)}); the files are incomplete or of another architecture")
            if self.shapes[name] != tuple(shape):
                raise CheckpointError(
                    f"{self.where[name]}: tensor {name!r} has shape {list(self.shapes[name])}, "
                    f"but config.json implies {list(shape)}; the config and the weights "
                    "disagree: use the config.json that came with these weights")


__all__ = ["INDEX_FILE", "TensorFiles", "read_config"]
