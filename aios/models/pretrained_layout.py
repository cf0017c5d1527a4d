"""Where converted pretrained models live and how their directory is marked, without torch.

An ArrowQuant pretrained directory (written by `aios.models.families.convert_pretrained`) holds
`WEIGHTS` and a `MARKER` file describing it. Both the torch loader and the NumPy runtime
(`aios.models.llama_numpy`) read it; this module keeps the names in one place that imports
nothing heavy, so opening a converted model in NumPy never loads torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aios.errors import AiosError

#: The file that marks (and describes) an ArrowQuant pretrained directory.
MARKER = "aios-pretrained.json"
WEIGHTS = "weights.arrow"
FORMAT_VERSION = 1


def cache_dir() -> Path:
    """Where converted models are kept: ``$XDG_CACHE_HOME/aios`` or ``~/.cache/aios``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aios" / "pretrained"


def read_marker(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The marker of an ArrowQuant directory, checked for this version's format."""
    path = Path(directory) / MARKER
    try:
        marker = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AiosError(f"{path} is unreadable ({exc}); convert the model again with "
                        "`aios quantize`") from exc
    if not isinstance(marker, dict) or marker.get("format_version") != FORMAT_VERSION:
        raise AiosError(f"{Path(directory)}: written by another aios version; convert the "
                        "model again with `aios quantize`")
    return marker


__all__ = ["FORMAT_VERSION", "MARKER", "WEIGHTS", "cache_dir", "read_marker"]
