"""The text head's network: token embeddings into the shared backbone, logits out of it.

Everything modality-specific sits here (the vocabulary, the mask token, tied or untied output
weights, the optional copy head); the backbone is the core's and is shared with the other heads.

The copy head (a pointer, as in pointer-generator networks) lets a masked position take its token
from a visible position of the same sequence: a query from the masked position's hidden state
meets a key from every visible one, and a gate mixes the resulting copy distribution with the
vocabulary softmax. A small model learns to point at the right passage token far sooner than it
learns, inside its attention layers, to reproduce a name it saw once in its context, which is
what reading retrieved memory asks of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from aios.models import Backbone, KVCache
from aios_text.inference import PROBABILITY_FLOOR, TEXT_MODALITY

#: The copy gate's initial bias: sigmoid(-4) = 1.8%, so a pretrained model given a fresh copy
#: head predicts almost exactly what it predicted before.
COPY_GATE_INIT = -4.0


class CopyHead(nn.Module):
    """Pointer over the visible positions: log of (1 - g) p_vocab + g p_copy.

    With `shift`, the pointer also compares the neighbours of the two positions (query and key
    projections of the previous and of the next position's state): the induction patterns "the
    token that followed the one before me" and "the token that preceded the one after me", which
    keep a name of several tokens together whichever of its pieces is unmasked first. The
    shifted queries start at zero, so adding them to a trained head changes nothing until it
    trains.
    """

    def __init__(self, dim: int, copy_dim: int, shift: bool = False) -> None:
        super().__init__()
        if copy_dim < 1:
            raise ValueError(f"copy_dim must be positive, got {copy_dim}")
        self.copy_dim = copy_dim
        self.query = nn.Linear(dim, copy_dim, bias=False)
        self.key = nn.Linear(dim, copy_dim, bias=False)
        self.gate = nn.Linear(dim, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, COPY_GATE_INIT)
        self.query_prev: nn.Linear | None = None
        self.key_prev: nn.Linear | None = None
        self.query_next: nn.Linear | None = None
        self.key_next: nn.Linear | None = None
        if shift:
            self.add_shift()

    @property
    def shift(self) -> bool:
        return self.query_prev is not None

    def add_shift(self) -> None:
        """Give the pointer the neighbouring positions' states (a no-op until trained)."""
        dim = self.query.in_features
        self.query_prev = nn.Linear(dim, self.copy_dim, bias=False)
        self.key_prev = nn.Linear(dim, self.copy_dim, bias=False)
        self.query_next = nn.Linear(dim, self.copy_dim, bias=False)
        self.key_next = nn.Linear(dim, self.copy_dim, bias=False)
        nn.init.zeros_(self.query_prev.weight)
        nn.init.zeros_(self.query_next.weight)

    def forward(self, hidden: Tensor, logits: Tensor, tokens: Tensor, sources: Tensor) -> Tensor:
        """`sources` (batch, length) marks the positions whose tokens may be copied."""
        queries, keys = self.query(hidden), self.key(hidden)
        if (self.query_prev is not None and self.key_prev is not None
                and self.query_next is not None and self.key_next is not None):
            previous = torch.nn.functional.pad(hidden, (0, 0, 1, 0))[:, :-1]
            following = torch.nn.functional.pad(hidden, (0, 0, 0, 1))[:, 1:]
            queries = torch.cat([queries, self.query_prev(previous),
                                 self.query_next(following)], dim=-1)
            keys = torch.cat([keys, self.key_prev(previous), self.key_next(following)], dim=-1)
        scores = queries @ keys.transpose(1, 2) / math.sqrt(self.copy_dim)
        scores = scores.float().masked_fill(~sources[:, None, :], -1e9)
        pointer = torch.softmax(scores, dim=-1)
        copy = torch.zeros_like(logits, dtype=torch.float32).scatter_add_(
            2, tokens[:, None, :].expand(-1, tokens.shape[1], -1), pointer)
        # a row with nothing visible cannot copy
        gate = torch.sigmoid(self.gate(hidden)).float() * sources.any(-1)[:, None, None]
        probs = (1 - gate) * torch.softmax(logits.float(), dim=-1) + gate * copy
        return torch.log(probs.clamp_min(PROBABILITY_FLOOR))


class TextHead(nn.Module):
    """Embedding in, logits out; the mask token can never be predicted. With `copy_dim`, a copy
    head mixes in tokens pointed at in the visible input (the logits are then log-probabilities)."""

    def __init__(self, vocab_size: int, dim: int, mask_id: int, *, tie: bool = True,
                 copy_dim: int = 0, copy_shift: bool = False) -> None:
        super().__init__()
        if not 0 <= mask_id < vocab_size:
            raise ValueError(f"mask_id {mask_id} is outside the vocabulary of {vocab_size}")
        self.mask_id = mask_id
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)
        self.project = None if tie else nn.Linear(dim, vocab_size, bias=False)
        self.copy = CopyHead(dim, copy_dim, copy_shift) if copy_dim else None

    @property
    def copy_dim(self) -> int:
        return 0 if self.copy is None else self.copy.copy_dim

    def logits(self, hidden: Tensor, tokens: Tensor | None = None,
               sources: Tensor | None = None) -> Tensor:
        weight = self.embed.weight if self.project is None else self.project.weight
        logits = hidden @ weight.T
        logits[..., self.mask_id] = float("-inf")
        if self.copy is not None:
            if tokens is None or sources is None:
                raise ValueError("a text head with a copy head needs the tokens and the "
                                 "positions to copy from")
            logits = self.copy(hidden, logits, tokens, sources)
            logits[..., self.mask_id] = float("-inf")
        return logits


def text_head_from_settings(settings: Mapping[str, Any], dim: int) -> TextHead:
    """An untrained head shaped as a model directory's text settings say (then load weights)."""
    return TextHead(int(settings["vocab_size"]), dim, int(settings["mask_id"]),
                    tie=bool(settings["tie"]), copy_dim=int(settings.get("copy_dim", 0)),
                    copy_shift=bool(settings.get("copy_shift", False)))


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
        if self.head.copy is None:
            return self.head.logits(hidden)
        if past is not None:
            raise ValueError("a model with a copy head runs without a key/value cache: the "
                             "cached positions' tokens would be out of its reach")
        sources = tokens != self.head.mask_id
        if padding_mask is not None:
            sources = sources & padding_mask
        return self.head.logits(hidden, tokens, sources)
