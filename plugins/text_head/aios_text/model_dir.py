"""Saving and loading a trained text model: backbone + text head + tokenizer in one directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aios.models import Backbone, load_backbone, load_module, save_model_dir
from aios_text.inference import TOKENIZER_FILE, text_settings
from aios_text.model import TextDiffusionModel, text_head_from_settings
from aios_text.tokenizer import TextTokenizer


def save_text_model(directory: str | os.PathLike[str], model: TextDiffusionModel,
                    tokenizer: TextTokenizer, *, schedule: str = "linear",
                    quantizer: Any = None, **facts: Any) -> Path:
    """Write the model; `facts` (objective, corpus, sequence_length) go into its settings so
    that `aios eval` can rebuild the held-out data the model was scored on."""
    directory = Path(directory)
    settings = {"vocab_size": tokenizer.vocab_size, "mask_id": tokenizer.mask_id,
                "tie": model.head.project is None, "schedule": schedule,
                **({"copy_dim": model.head.copy_dim} if model.head.copy_dim else {}),
                **({"copy_shift": True} if model.head.copy is not None
                   and model.head.copy.shift else {}),
                "tokenizer": TOKENIZER_FILE, **facts}
    save_model_dir(directory, model.backbone, {"text": (model.head, settings)},
                   quantizer=quantizer)
    tokenizer.save(directory / TOKENIZER_FILE)
    return directory


def load_text_model(directory: str | os.PathLike[str]
                    ) -> tuple[TextDiffusionModel, TextTokenizer, dict[str, Any]]:
    """The model (in eval mode), its tokenizer, and the head's settings."""
    directory = Path(directory)
    settings = text_settings(directory)
    backbone: Backbone = load_backbone(directory)
    head = text_head_from_settings(settings, backbone.config.dim)
    load_module(directory / "text.arrow", head)
    tokenizer = TextTokenizer.load(directory / settings.get("tokenizer", TOKENIZER_FILE))
    return TextDiffusionModel(backbone, head).eval(), tokenizer, settings


def save_int8_model(directory: Path, model: TextDiffusionModel, tokenizer: TextTokenizer, *,
                    schedule: str, **facts: Any) -> bool:
    """Write `model` with int8 linear layers (the form that ships), quantized by the best
    installed quantizer (native over reference); False when no quantizer is installed."""
    from aios.registry import default_registry

    quantizer = default_registry().best("quantizer")
    if quantizer is None:
        return False
    save_text_model(directory, model, tokenizer, schedule=schedule,
                    quantizer=quantizer.factory(bits=8), **facts)
    return True

