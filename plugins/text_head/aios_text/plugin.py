"""The aios registration of aios-text: the head, its training recipe and its evaluation."""

from collections.abc import Callable

import aios

AIOS_CONTRACT_VERSION = "1.2"


@aios.hookimpl
def aios_register_heads(register: Callable[..., None]) -> None:
    from aios_text.head import TextDiffusionHead

    register("text", TextDiffusionHead, family="discrete",
             summary="masked-diffusion language model (ships trained on offline English text)")


@aios.hookimpl
def aios_register_recipes(register: Callable[..., None]) -> None:
    from aios_text.recipe import train_command

    register("text", train_command,
             summary="masked-diffusion language model on offline English text")


@aios.hookimpl
def aios_register_evaluators(register: Callable[..., None]) -> None:
    from aios_text.evaluate import evaluate_command

    register("text", evaluate_command,
             summary="validation perplexity: the diffusion ELBO bound and an AR baseline's")
