"""The text head as the engine sees it: prompts in, masked sequences to the sampler, text out.

A prompt becomes `[prompt tokens] [mask] * length [suffix tokens]`; the sampler unmasks the
middle. With a suffix (infilling) the head does not stop at end-of-sequence, since the text
must join the suffix. A batch of prompts is left-padded to one length, with the padding hidden
from attention, so every row is generated as if it were alone.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from aios.protocols import GenerationRequest, MaskedState
from aios_text.model_dir import load_text_model


class TextDiffusionHead:
    """Masked-diffusion text generation with a trained aios text model directory."""

    modality = "text"
    family = "discrete"

    def __init__(self, model: str, length: int = 64) -> None:
        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        self.model, self.tokenizer, _ = load_text_model(os.path.expanduser(model))
        self.length = length
        self.calls = 0  # network evaluations, for benchmarks and cache tests

    def initial_state(self, request: GenerationRequest, rng: np.random.Generator) -> MaskedState:
        prompts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
        length = int(request.options.get("length", self.length))
        suffix = request.options.get("suffix")
        suffix_ids = self.tokenizer.encode(suffix) if suffix else []
        rows = [ids + [self.tokenizer.mask_id] * length + suffix_ids
                for ids in self.tokenizer.encode_batch(prompts)]
        width = max(len(r) for r in rows)
        if width > self.model.backbone.config.max_len:
            raise ValueError(f"prompt + length + suffix is {width} tokens, more than the model's "
                             f"{self.model.backbone.config.max_len}; shorten them")
        tokens = np.full((len(rows), width), self.tokenizer.pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            tokens[i, width - len(row):] = row
        eos = None if suffix else self.tokenizer.eos_id
        return MaskedState(tokens, self.tokenizer.mask_id, eos)

    @torch.no_grad()
    def denoise(self, state: MaskedState, t: Any, request: GenerationRequest) -> np.ndarray:
        self.calls += 1
        tokens = torch.as_tensor(np.asarray(state.tokens), dtype=torch.long)
        if tokens.dim() == 1:
            tokens = tokens[None]
        padding = tokens != self.tokenizer.pad_id
        times = torch.full((tokens.shape[0],), float(np.asarray(t).reshape(-1)[0]))
        logits = self.model(tokens, times, padding_mask=padding)
        return logits.float().numpy()

    def decode(self, state: MaskedState, request: GenerationRequest) -> str | list[str]:
        texts = []
        for row in np.atleast_2d(state.tokens):
            ids = [int(i) for i in row if i != self.tokenizer.pad_id]
            if self.tokenizer.eos_id in ids and not request.options.get("suffix"):
                ids = ids[: ids.index(self.tokenizer.eos_id)]
            texts.append(self.tokenizer.decode(ids))
        return texts[0] if isinstance(request.prompt, str) else texts
