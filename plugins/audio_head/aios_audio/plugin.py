"""The aios registration of aios-audio: the audio head and its training recipe.

Registering imports nothing heavy: the head runs in NumPy, and training (torch, espeak-ng) is
imported only when `aios train audio` runs it.
"""

# The hooks below are a copy shared with aios_image/plugin.py (the packs install separately);
# tests/test_pack_copies.py checks that they agree.

from collections.abc import Callable
from typing import Any

import aios

AIOS_CONTRACT_VERSION = "1.4"


@aios.hookimpl
def aios_register_heads(register: Callable[..., None]) -> None:
    from aios_audio.head import AudioHead

    # Below the text head: `head: auto` without a modality keeps generating text.
    register("audio", AudioHead, family="continuous", priority=-20,
             summary="word-conditional Gaussian diffusion on 16 kHz log-magnitude spectra")


def train_audio(recipe: str | None = None, out: str = "runs/audio",
                progress: bool = True) -> dict[str, Any]:
    """Audio head on words rendered by espeak-ng, on the frozen text backbone."""
    from aios_audio.recipe import train_command

    return train_command(recipe, out, progress)


@aios.hookimpl
def aios_register_recipes(register: Callable[..., None]) -> None:
    register("audio", train_audio)


@aios.hookimpl
def aios_diagnostics(report: Callable[[str, Any], None]) -> None:
    """espeak-ng renders the words the recipe trains on and the evaluation scores with."""
    import shutil

    from aios.resources import OptionalResource

    report("resource espeak-ng", OptionalResource(
        "espeak-ng", shutil.which("espeak-ng") is not None,
        ("aios train audio", "aios eval audio"), "apt-get install espeak-ng"))
