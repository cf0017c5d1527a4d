"""The `text` head: one name for every text model the pack runs, chosen by the `model` option.

- the default (`model` unset) and `smollm2-dlm`: SmolLM2-135M adapted to block diffusion
  (`aios_text.adapt.head`, torch), or any directory made by the adaptation recipe;
- `tiny` (also `default`, its old name), `memory`, or a directory with a `model.yaml`: the small
  masked-diffusion models trained from scratch (`aios_text.head`, NumPy), which keep their
  adapters, memory training and row-level server batching.

``AIOS_TEXT_MODEL`` names the model used when `model` is unset (the test suite pins `tiny`
with it; a user may pin any model the same way). Options that only one kind of model has are
refused for the other, naming the option.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aios.errors import UsageError

#: Options of the tiny NumPy models only / of the adapted models only.
TINY_OPTIONS = ("prefix_cache", "adapters", "adapters_dir")
ADAPTED_OPTIONS = ("block_size", "dtype", "device")
TINY_NAMES = {"tiny": "default"}


def is_tiny(model: str) -> bool:
    """Whether `model` names a small from-scratch model (a directory with `model.yaml`)."""
    from aios_text.inference import model_path

    name = TINY_NAMES.get(model, model)
    return (model_path(name) / "model.yaml").exists()


def text_head(model: str = "", length: int | None = None, prefix_cache: bool | None = None,
              adapters: str | None = None, adapters_dir: str | None = None,
              block_size: int | None = None, dtype: str | None = None,
              device: str | None = None) -> Any:
    """Build the head for `model` (see the module docstring for the names)."""
    model = model or os.environ.get("AIOS_TEXT_MODEL", "")
    given = {k: v for k, v in {"prefix_cache": prefix_cache, "adapters": adapters,
                               "adapters_dir": adapters_dir, "block_size": block_size,
                               "dtype": dtype, "device": device}.items() if v is not None}
    if model and is_tiny(model):
        wrong = [k for k in given if k in ADAPTED_OPTIONS]
        if wrong:
            raise UsageError(f"option {wrong[0]} is for the adapted models; {model!r} is a "
                             "tiny NumPy model: remove the option or choose another model")
        from aios_text.head import TextDiffusionHead

        return TextDiffusionHead(TINY_NAMES.get(model, model),
                                 **({} if length is None else {"length": length}), **given)
    wrong = [k for k in given if k in TINY_OPTIONS]
    if wrong:
        raise UsageError(f"option {wrong[0]} is for the tiny models; the adapted model "
                         f"{model or 'smollm2-dlm'!r} has none: remove it, or choose "
                         "--set head.model=tiny")
    from aios_text.adapt.head import BlockDiffusionTextHead

    return BlockDiffusionTextHead(model, **({} if length is None else {"length": length}),
                                  **given)


# What the registry reads from a head's factory without building it: the modality, the
# sampler family, and the model directory other packs build on (`backbone_from: text`: the
# tiny model's backbone, shared by the image and audio heads).
text_head.modality = "text"  # type: ignore[attr-defined]
text_head.family = "discrete"  # type: ignore[attr-defined]
text_head.default_model = Path(__file__).with_name("models") / "default"  # type: ignore[attr-defined]


__all__ = ["ADAPTED_OPTIONS", "TINY_OPTIONS", "is_tiny", "text_head"]
