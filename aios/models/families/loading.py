"""One entry point for every pretrained source: a published checkpoint or its converted copy.

Kept apart from `pretrained` (published layouts) and `arrowquant` (converted copies) so that
neither imports the other to dispatch: the converter reads checkpoints, and this module reads
both.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aios.models.families.arrowquant import MARKER, load_arrowquant
from aios.models.families.pretrained import PretrainedModel, load_checkpoint, resolve_dtype

__all__ = ["load_pretrained"]


def load_pretrained(
    source: str | Path,
    *,
    family: str | None = None,
    dtype: str | torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> PretrainedModel:
    """Load a checkpoint directory, a `.gguf` file or an ArrowQuant directory written by
    `convert_pretrained`, with weights in `dtype` on `device`."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / MARKER).exists():
        return load_arrowquant(path, dtype=resolve_dtype(dtype), device=device)
    return load_checkpoint(path, family=family, dtype=dtype, device=device)
