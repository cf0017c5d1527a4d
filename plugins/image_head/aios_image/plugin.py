"""The aios registration of aios-image: the image head and its training recipe.

Registering imports nothing heavy: the head runs in NumPy, and training (torch) is imported only
when `aios train image` runs it.
"""

# The hooks below are a copy shared with aios_audio/plugin.py (the packs install separately);
# tests/test_pack_copies.py checks that they agree.

from collections.abc import Callable
from typing import Any

import aios

AIOS_CONTRACT_VERSION = "1.4"


@aios.hookimpl
def aios_register_heads(register: Callable[..., None]) -> None:
    from aios_image.head import ImageHead

    # Below the text head: `head: auto` without a modality keeps generating text.
    register("image", ImageHead, family="continuous", priority=-10,
             summary="class-conditional Gaussian diffusion on 28x28 Fashion-MNIST patches")


def train_image(recipe: str | None = None, out: str = "runs/image",
                progress: bool = True) -> dict[str, Any]:
    """Image head on Fashion-MNIST, on the frozen text backbone."""
    from aios_image.recipe import train_command

    return train_command(recipe, out, progress)


@aios.hookimpl
def aios_register_recipes(register: Callable[..., None]) -> None:
    register("image", train_image)


@aios.hookimpl
def aios_diagnostics(report: Callable[[str, Any], None]) -> None:
    """Fashion-MNIST is what the recipe trains on and the evaluation scores with."""
    from aios.resources import OptionalResource
    from aios_image.data import FASHION_MNIST_DIR

    report("resource dataset-fashion-mnist", OptionalResource(
        "dataset-fashion-mnist", FASHION_MNIST_DIR.is_dir(),
        ("aios train image", "aios eval image"), "apt-get install dataset-fashion-mnist"))
