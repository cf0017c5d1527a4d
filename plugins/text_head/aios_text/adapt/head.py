"""The text head of an adapted block-diffusion model (the default text model).

The engine's contract (`aios.protocols`): `initial_state` lays out `[memory context] [prompt]
[mask] * length [suffix]`, the block-wise sampler (`block-threshold`) reveals positions of the
current block, `denoise` gives the logits of the current block's positions, `decode` gives the
text. The sampler announces finished blocks through `on_prefix`, and the head keeps, per row,
a causal key/value cache of everything final (`aios.runtime.BlockKVCache`): a step runs only
the not-yet-cached final tokens (causally; they join the cache in the same forward) and the
current block (bidirectionally, over the whole prefix). So a block of 8 costs about one forward
of 8 positions per step, whatever the prompt's length.

Logits are given only for the current block; other positions get all-zero logits (uniform),
which the block-wise sampler never reads. Rows are independent (each has its own cache), so a
sampler may evaluate a subset of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from aios.errors import UsageError
from aios.protocols import GenerationRequest, MaskedState
from aios.runtime import BlockKVCache
from aios_text.adapt.decode import step_hidden
from aios_text.adapt.model import BlockDiffusionLM
from aios_text.head import decode_with_masks

#: SmolLM2's padding and end of text (`<|endoftext|>`, `<|im_end|>`).
PAD_ID, END_ID = 0, 2


@dataclass(frozen=True, eq=False)
class BlockState(MaskedState):
    """A `MaskedState` that tells a block-wise sampler the block length the model was trained
    for, and where each row's output begins (after the memory context and the prompt)."""

    block_length: int = 8
    context_end: np.ndarray | None = None


class _Row:
    """One row's cache: keys/values of columns [start, cached), and the logits that predict
    the first position of the current block."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.cached = start
        self.cache = BlockKVCache()
        self.first: torch.Tensor | None = None


class BlockDiffusionTextHead:
    """Generates text with an adapted block-diffusion model (`aios_text.adapt`).

    Options: `model` (the shipped adapted model's name, or a directory made by
    `aios_text.adapt.shipping.materialize`), `length` new tokens, `block_size` (default: what
    the model was trained for), `dtype` (`float32` or `bfloat16`), `device`.
    """

    modality = "text"
    family = "discrete"
    #: logits are given for the current block only, so the sampler must go block by block
    preferred_sampler = "block-threshold"
    generation_options: ClassVar[dict[str, str]] = {
        "length": "new tokens to generate (at most; end of text stops earlier)",
        "suffix": "text that must follow; the model fills the middle (infilling)",
    }

    def __init__(self, model: str = "", length: int = 128, block_size: int = 8,
                 dtype: str = "float32", device: str = "cpu") -> None:
        from aios_text.adapt.shipping import open_adapted

        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.model: BlockDiffusionLM
        self.model, self.tokenizer, self.source = open_adapted(model, dtype=dtype, device=device)
        self.length, self.block_size = length, block_size
        self.calls = 0
        self.positions = 0
        self._rows: list[_Row] = []
        self._final = 0
        self._logits: torch.Tensor | None = None
        self._written: tuple[int, int] | None = None

    def parameter_counts(self) -> dict[str, int]:
        return {"backbone": sum(p.numel() for p in self.model.network.parameters()), "head": 0}

    # -- the engine's contract -------------------------------------------------------------------

    def initial_state(self, request: GenerationRequest, rng: np.random.Generator) -> BlockState:
        prompts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
        length = int(request.options.get("length", self.length))
        if length < 1:
            raise UsageError(f"length must be positive, got {length}")
        suffix = request.options.get("suffix")
        suffix_ids = self._encode(suffix) if suffix else []
        context = self._context(request.context)
        encoded = [context + self._encode(p) for p in prompts]
        if any(not ids for ids in encoded):
            raise UsageError("the prompt is empty; give at least one word")
        limit = int(self.model.config.max_position_embeddings)
        longest = max(map(len, encoded)) + length + len(suffix_ids)
        if longest > limit:
            raise UsageError(f"prompt + length + suffix is {longest} tokens, more than the "
                             f"model's {limit}; ask for fewer tokens or shorten the prompt")
        width = max(map(len, encoded))
        mask = self.model.mask_token_id
        rows = [[PAD_ID] * (width - len(ids)) + ids + [mask] * length + suffix_ids
                for ids in encoded]
        tokens = np.array(rows, dtype=np.int64)
        self._rows = [_Row(width - len(ids)) for ids in encoded]
        self._final = width
        self._written = (0, self._logits.shape[1]) if self._logits is not None else None
        block = self.block_size if not suffix_ids else length + len(suffix_ids)
        ends = np.array([width - len(ids) + len(context) for ids in encoded])
        return BlockState(tokens, mask, None if suffix_ids else END_ID,
                          on_prefix=self._on_prefix, block_length=block, context_end=ends)

    def denoise(self, state: MaskedState, t: Any, request: GenerationRequest) -> torch.Tensor:
        tokens = torch.as_tensor(np.atleast_2d(np.asarray(state.tokens)),
                                 device=self.model.mask_embedding.device)  # the runtime's
        rows = range(len(tokens)) if state.rows is None else [int(r) for r in state.rows]
        block = getattr(state, "block_length", self.block_size)
        begin, end = self._final, min(self._final + block, tokens.shape[1])
        out = self._output(len(self._rows), tokens.shape[1])[:len(tokens)]
        with torch.inference_mode():
            for i, r in enumerate(rows):
                out[i, begin:end] = self._step(self._rows[r], tokens[i], begin, end)
        self._written = (begin, end)
        self.calls += 1
        return out

    def _output(self, batch: int, width: int) -> torch.Tensor:
        """The logits array of this generation: allocated once (batch x width x vocab, tens of
        MB), zero except the block written last, which is zeroed again here (the sampler reads
        only the current block, and zeros elsewhere keep any other reader harmless)."""
        vocab = self.model.network.get_input_embeddings().weight.shape[0]
        if self._logits is None or self._logits.shape != (batch, width, vocab):
            self._logits = torch.zeros(batch, width, vocab)
        elif self._written is not None:
            self._logits[:, self._written[0]:self._written[1]] = 0
        self._written = None
        return self._logits

    def decode(self, state: MaskedState, request: GenerationRequest) -> str | list[str]:
        texts = []
        ends = getattr(state, "context_end", None)
        for n, row in enumerate(np.atleast_2d(np.asarray(state.tokens))):
            ids = [int(i) for i in (row if ends is None else row[ends[n]:]) if i != PAD_ID]
            if state.eos_id is not None and state.eos_id in ids:
                ids = ids[:ids.index(state.eos_id)]
            texts.append(self._text(ids))
        return texts[0] if isinstance(request.prompt, str) else texts

    # -- the work ---------------------------------------------------------------------------------

    def _on_prefix(self, tokens: Any, length: int) -> None:
        self._final = max(self._final, int(length))

    def _step(self, row: _Row, tokens: torch.Tensor, begin: int, end: int) -> torch.Tensor:
        """Logits of columns [begin, end) of one row; finished columns join its cache."""
        pending = begin - row.cached
        hidden = step_hidden(self.model, row.cache, tokens[row.cached:end], pending=pending,
                             start=row.cached - row.start)
        self.positions += end - row.cached
        if pending:
            row.first = self.model.logits(hidden[pending - 1])
            row.cached = begin
        inner = self.model.logits(hidden[pending:pending + (end - begin) - 1])
        return torch.cat([row.first[None], inner]).float()

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def _context(self, passages: Any) -> list[int]:
        """Memory passages (best last, nearest the prompt), each closed by end of text."""
        ids: list[int] = []
        for passage in reversed(list(passages or [])):
            text = passage if isinstance(passage, str) else getattr(passage, "text", str(passage))
            ids += [*self._encode(text), END_ID]
        return ids

    def _text(self, ids: list[int]) -> str:
        return decode_with_masks(self.tokenizer.decode, ids, self.model.mask_token_id)


__all__ = ["BlockDiffusionTextHead", "BlockState"]
