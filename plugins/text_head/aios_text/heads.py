"""The `text` head: one name for every text model the pack runs, chosen by the `model` option.

- the default (`model` unset) and `smollm2-dlm`: SmolLM2-135M adapted to block diffusion
  (`aios_text.adapt.head`, NumPy or torch), `smollm2-dlm-memory` (the same, trained to read
  memory), or any directory made by the adaptation recipe;
- `tiny` (also `default`, its old name), `memory`, or a directory with a `model.yaml`: the small
  masked-diffusion models trained from scratch (`aios_text.head`, NumPy), which keep their
  adapters, memory training and row-level server batching.

``AIOS_TEXT_MODEL`` names the model used when `model` is unset (the test suite pins `tiny`
with it; a user may pin any model the same way). Options that only one kind of model has are
refused for the other, naming the option.

The runtime (the config's ``runtime:`` section, resolved by the engine and passed as
`runtime`): the adapted models run in NumPy (`aios.models.ArrayLlama`: no torch imported, the
int8 weights multiplied as stored by the native kernels; what ``auto`` takes on a CPU) or in
torch, on the runtime's device and in its dtype unless the head options `device` / `dtype` say
otherwise (head options win), and through `torch.compile` with ``runtime.compile: true``.
The tiny models run in NumPy on the CPU only
(the factory's `runtimes` says which, so ``runtime: auto`` picks right and an explicit
setting the model cannot honour is refused).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aios.errors import UsageError
from aios.runtime import RuntimeChoice, check_dtype, find_device

#: Options of the tiny NumPy models only / of the adapted models only.
TINY_OPTIONS = ("prefix_cache", "adapters", "adapters_dir")
ADAPTED_OPTIONS = ("block_size", "dtype", "device")
TINY_NAMES = {"tiny": "default"}


def is_tiny(model: str) -> bool:
    """Whether `model` names a small from-scratch model (a directory with `model.yaml`)."""
    from aios_text.inference import model_path

    name = TINY_NAMES.get(model, model)
    return (model_path(name) / "model.yaml").exists()


def text_runtimes(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The runtimes the model named by the head `options` runs in: numpy for a tiny model,
    numpy or torch for an adapted one, torch only when the head options ask for a device or
    dtype that numpy does not run (read by the engine before the head is built)."""
    model = options.get("model") or os.environ.get("AIOS_TEXT_MODEL", "")
    if model and is_tiny(model):
        return ("numpy",)
    if _needs_torch(options.get("device", "auto"), options.get("dtype", "auto")):
        return ("torch",)
    return ("numpy", "torch")


def _needs_torch(device: str, dtype: str) -> bool:
    """Whether head options ask for what only torch runs (numpy is float32 on the CPU)."""
    return device not in ("auto", "cpu") or dtype not in ("auto", "float32")


def text_head(model: str = "", length: int | None = None, prefix_cache: bool | None = None,
              adapters: str | None = None, adapters_dir: str | None = None,
              block_size: int | None = None, dtype: str | None = None,
              device: str | None = None, runtime: RuntimeChoice | None = None) -> Any:
    """Build the head for `model` (see the module docstring for the names) on `runtime`
    (None: the adapted model's own defaults, float32 on the CPU)."""
    model = model or os.environ.get("AIOS_TEXT_MODEL", "")
    given = {k: v for k, v in {"prefix_cache": prefix_cache, "adapters": adapters,
                               "adapters_dir": adapters_dir, "block_size": block_size,
                               "dtype": dtype, "device": device}.items() if v is not None}
    if model and is_tiny(model):
        wrong = [k for k in given if k in ADAPTED_OPTIONS]
        if wrong:
            raise UsageError(f"option {wrong[0]} is for the adapted models; {model!r} is a "
                             "tiny NumPy model: remove the option or choose another model")
        if runtime is not None and runtime.name != "numpy":
            raise UsageError(f"the tiny text model {model!r} runs in numpy on the CPU only, not "
                             f"in {runtime.name} on {runtime.device}: set runtime.name: numpy "
                             "(or auto), or use the default text model (unset head.model)")
        from aios_text.head import TextDiffusionHead

        return TextDiffusionHead(TINY_NAMES.get(model, model),
                                 **({} if length is None else {"length": length}), **given)
    wrong = [k for k in given if k in TINY_OPTIONS]
    if wrong:
        raise UsageError(f"option {wrong[0]} is for the tiny models; the adapted model "
                         f"{model or 'smollm2-dlm'!r} has none: remove it, or choose "
                         "--set head.model=tiny")
    if runtime is not None:
        given.update(_placement(given, runtime))
    from aios_text.adapt.head import BlockDiffusionTextHead

    head = BlockDiffusionTextHead(model, **({} if length is None else {"length": length}),
                                  **given)
    if runtime is not None and runtime.name == "torch":
        # `hidden` runs the transformer body (`network.model`); the output layer is one matmul
        runtime.prepare(head.model.network.model)
    return head


def _placement(given: Mapping[str, Any], runtime: RuntimeChoice) -> dict[str, str]:
    """Runtime, device and dtype of the adapted model: the head options where given (they
    win; `auto` means the runtime's), else the runtime's; checked like the runtime section's.
    The numpy runtime is float32 on the CPU and checks without listing devices (which would
    import torch)."""
    device, dtype = given.get("device", "auto"), given.get("dtype", "auto")
    if runtime.name == "numpy":
        if _needs_torch(device, dtype):
            raise UsageError(f"head.device {device} / head.dtype {dtype} need the torch "
                             "runtime, and runtime.name is numpy: set runtime.name: torch, or "
                             "drop the head options")
        return {"device": "cpu", "dtype": "float32", "runtime": "numpy"}
    device = runtime.device if device == "auto" else find_device(
        device, where="head options", key="head.device").name
    dtype = runtime.dtype if dtype == "auto" else dtype
    check_dtype(find_device(device), dtype, where="head options",
                key="head.dtype")
    return {"device": device, "dtype": dtype, "runtime": "torch"}


# What the registry reads from a head's factory without building it: the modality, the
# sampler family, and the model directory other packs build on (`backbone_from: text`: the
# tiny model's backbone, shared by the image and audio heads).
text_head.modality = "text"  # type: ignore[attr-defined]
text_head.family = "discrete"  # type: ignore[attr-defined]
text_head.default_model = Path(__file__).with_name("models") / "default"  # type: ignore[attr-defined]
# Which runtimes the model runs in depends on the `model` option: the engine asks before building.
text_head.runtimes = text_runtimes  # type: ignore[attr-defined]


__all__ = ["ADAPTED_OPTIONS", "TINY_OPTIONS", "is_tiny", "text_head", "text_runtimes"]
