"""The aios registration of aios-text.

It registers the training recipe (`aios train text`); the generating head is registered once a
trained model ships with the pack, so that a config can never select a head without weights.
"""

from collections.abc import Callable

import aios

AIOS_CONTRACT_VERSION = "1.1"


@aios.hookimpl
def aios_register_recipes(register: Callable[..., None]) -> None:
    from aios_text.recipe import train_command

    register("text", train_command,
             summary="masked-diffusion language model on offline English text")
