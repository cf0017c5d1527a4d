"""The adapted model in NumPy: what `aios_text.adapt.decode` needs, on `aios.models.ArrayLlama`.

Why: the merged adapted model is a plain Llama (LoRA folded in, the mask embedding in its
vocabulary row), so the torch-free Llama forward runs it as it is. A generation then imports
neither torch nor `transformers` (about 5 s on two cores), and the int8 linear weights are
multiplied as stored by the native int8 kernels instead of being dequantized into float32.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from aios.models import ArrayLlama


class ArrayBlockLM:
    """A `BlockModel` (see `aios_text.adapt.decode`) over an `ArrayLlama`."""

    def __init__(self, network: ArrayLlama, mask_token_id: int) -> None:
        self.network = network
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = network.vocab_size
        self.config = network.config

    @classmethod
    def load(cls, directory: Path, mask_token_id: int) -> ArrayBlockLM:
        return cls(ArrayLlama.load(directory), mask_token_id)

    def asarray(self, host: Any) -> np.ndarray:
        return np.asarray(host)

    def hidden(self, ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray,
               cache: Any = None) -> np.ndarray:
        return self.network.hidden(self.network.embed(ids), attention_mask, position_ids,
                                   cache)

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        return self.network.logits(hidden)

    def inference(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def parameter_count(self) -> int:
        return self.network.parameter_count()


__all__ = ["ArrayBlockLM"]
