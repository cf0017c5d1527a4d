"""The text head's network: token embeddings into the shared backbone, logits out of it.

Everything modality-specific sits here (the vocabulary, the mask token, tied or untied output
weights); the backbone is the core's and is shared with the other heads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aios.backbone import Backbone, KVCache
from aios_text.inference import TEXT_MODALITY


class TextHead(nn.Module):
    """Embedding in, logits out; the mask token can never be predicted."""

    def __init__(self, vocab_size: int, dim: int, mask_id: int, *, tie: bool = True) -> None:
        super().__init__()
        if not 0 <= mask_id < vocab_size:
            raise ValueError(f"mask_id {mask_id} is outside the vocabulary of {vocab_size}")
        self.mask_id = mask_id
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)
        self.project = None if tie else nn.Linear(dim, vocab_size, bias=False)

    def logits(self, hidden: Tensor) -> Tensor:
        weight = self.embed.weight if self.project is None else self.project.weight
        logits = hidden @ weight.T
        logits[..., self.mask_id] = float("-inf")
        return logits


class TextDiffusionModel(nn.Module):
    """Backbone + text head: (tokens, t) -> logits of the clean token at every position."""

    def __init__(self, backbone: Backbone, head: TextHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(
        self,
        tokens: Tensor,
        t: Tensor,
        *,
        padding_mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        past: KVCache | None = None,
    ) -> Tensor:
        if tokens.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"tokens must be an integer tensor, got {tokens.dtype}")
        hidden = self.backbone(self.head.embed(tokens), t, TEXT_MODALITY,
                               padding_mask=padding_mask, attention_mask=attention_mask,
                               cond=cond, cond_mask=cond_mask, past=past)
        return self.head.logits(hidden)
