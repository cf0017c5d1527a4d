"""The image head as the engine sees it: a class name in, a uint8 grey image out.

Generation runs on `aios.models.ClassConditionalHead`: in NumPy (no torch; ``runtime: auto``
on a CPU), or in torch on the configured runtime's device and dtype (``runtime.name: torch``;
``auto`` beside a GPU). The pack adds only its codec (patches <-> pixels) and the PNG files the
command line writes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aios.errors import AiosError
from aios.io import write_atomic
from aios.models import ClassConditionalHead
from aios.protocols import GaussianState, GenerationRequest
from aios.runtime import RuntimeChoice
from aios.training import write_grid_png
from aios_image.codec import unpatchify

#: The model that ships with the pack (see its MODEL_CARD.md).
DEFAULT_MODEL = Path(__file__).with_name("models") / "default"


class ImageHead(ClassConditionalHead):
    """Class-conditional Gaussian diffusion on image patches (Fashion-MNIST by default).

    Options (config keys beside `head.name`): `model`, a model directory written by
    `aios train image` (default: the shipped one); `view_scale`, how many pixels each
    generated pixel becomes in the PNG `write` saves (nearest neighbour, so nothing is
    invented; default 8, a 28x28 image becomes 224x224; 1 keeps the raw size). Prompts name a
    class ("sneaker"); a list of prompts generates a batch. `decode` returns uint8 (height,
    width), or (count, height, width) for a list, always at the raw size.
    """

    modality = "image"
    name = "image"
    output_suffix = ".png"
    #: The shipped model (a recipe's `backbone_slot` reads the slots of installed heads).
    default_model = DEFAULT_MODEL

    def __init__(self, model: str = "", view_scale: int = 8,
                 runtime: RuntimeChoice | None = None) -> None:
        if not isinstance(view_scale, int) or view_scale < 1:
            raise AiosError(f"view_scale must be a whole number of at least 1, got "
                            f"{view_scale!r}; 1 saves images at their raw size")
        self.view_scale = view_scale
        path = Path(os.path.expanduser(model)) if model else DEFAULT_MODEL
        if not model and not (path / "model.yaml").exists():
            raise AiosError(f"the default image model is missing from {path}; reinstall "
                            "aios-image or give a model directory: --set head.model=DIR")
        super().__init__(path, runtime)
        self.height, self.width = (int(v) for v in self.settings["image_size"])
        self.patch = int(self.settings["patch"])

    def decode(self, state: GaussianState, request: GenerationRequest) -> np.ndarray:
        images = unpatchify(state.x, self.height, self.width, self.patch)
        return images if isinstance(request.prompt, (list, tuple)) else images[0]

    def write(self, output: np.ndarray, path: str | os.PathLike[str], *,
              rows: Sequence[str] | None = None) -> list[Path]:
        """Save `output` as a PNG; with `rows` (one name per row), a batch becomes a grid with
        one row per name, labelled."""
        path = Path(path)
        output = np.asarray(output)
        if rows is None:
            if output.ndim != 2:
                raise ValueError(f"one image is (height, width), got {output.shape}; pass "
                                 "rows= to write a batch as a grid")
            write_png(path, upscale(output, self.view_scale))
        else:
            names = [name.split("/")[0] for name in rows]
            write_grid_png(path, output, names, cmap="gray", vmin=0, vmax=255)
        return [path]


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel as a `factor` x `factor` block (nearest neighbour): bigger on screen, with
    no detail made up by interpolation."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def write_png(path: Path, image: np.ndarray) -> None:
    """A grey uint8 image as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image as mpimg

    buffer = io.BytesIO()
    mpimg.imsave(buffer, image, cmap="gray", vmin=0, vmax=255, format="png")
    write_atomic(path, lambda f: f.write(buffer.getvalue()))
