"""Memory training of the adapted model: read the passages that retrieval puts before a question.

The adaptation recipe's `memory:` section adds this task to its corpus task. Its examples are
the invented facts of `aios_text.facts`, stored in a real memory (`aios.memory`: chunking, the
embedder, the store) and retrieved for each fact's questions and cloze prompt exactly as the
`memory` conditioner retrieves at generation; a row is laid out as the head lays it out
(`aios_text.adapt.head.memory_context`): ``[passages] [prompt] [answer] <end>...``.

What is held out, so that exact match measures reading rather than recall:
- facts: the held-out part of `make_facts` never appears in training;
- sentence forms: only the templates `train_forms` are stored in the training memory; the
  evaluation stores the held-out facts in the other templates (`benchmarks/memory_read.py`).
The answer a question is trained on is the fact restated in its first template (or the bare
object after a cloze prompt), so answering a held-out form means rewriting what was read.

The loss is the block-diffusion loss on the answer alone: rows are right-aligned so the answer
starts on a block boundary (as generation starts its first block right after the prompt), the
clean row is causal, and two complementary noisy copies of the answer region (only that region:
the context is never masked) see the clean positions before their block and their own block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from aios_text.adapt.head import memory_context
from aios_text.adapt.model import BlockDiffusionLM, training_mask
from aios_text.adapt.objective import shard_rows
from aios_text.facts import make_facts
from aios_text.memory_recipe import Example, cached_examples


@dataclass(frozen=True)
class MemoryData:
    """The `memory:` section of an adaptation recipe; `weight` 0 (the default) leaves it out."""

    weight: float = 0.0  #: share of training steps on retrieval examples
    facts: int = 2000
    held_out: float = 0.25  #: fraction of facts never trained on
    fact_seed: int = 0
    train_forms: tuple[int, ...] = (0, 1)  #: sentence templates stored in training memory
    embedder: str = "minilm"
    chunk_sizes: tuple[int, ...] = (60, 200)  #: characters per passage (200: the config's)
    chunk_overlap: int = 0
    top_k: int = 5  #: as the memory conditioner's defaults
    min_score: float = 0.3
    lexical_weight: float = 0.5
    answer_length: int = 32  #: tokens; a multiple of the block size
    block_size: int = 8  #: the decoding block size
    batch_size: int = 8
    min_rate: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.weight < 1:
            raise ValueError(f"memory.weight is a share of steps in [0, 1), got {self.weight}")
        if self.answer_length % self.block_size or self.answer_length < self.block_size:
            raise ValueError(f"memory.answer_length ({self.answer_length}) must be a multiple "
                             f"of memory.block_size ({self.block_size})")
        if not self.train_forms or min(self.train_forms) < 0:
            raise ValueError(f"memory.train_forms are template indexes, got {self.train_forms}")
        if not self.chunk_sizes or min(self.chunk_sizes) < 20:
            raise ValueError(f"memory.chunk_sizes are characters per passage (>= 20), got "
                             f"{self.chunk_sizes}")


def memory_examples(data: MemoryData, out: Path, embedder: Any = None,
                    progress: bool = True) -> list[Example]:
    """The retrieved training examples, made once per run directory (``memory-examples.json``):
    the training facts stored in the training forms, one store per chunk size."""
    from aios.memory import build_embedder

    path = out / "memory-examples.json"
    if embedder is None and not path.exists():
        embedder = build_embedder(data.embedder)
    facts = list(make_facts(data.facts, held_out=data.held_out, seed=data.fact_seed).train)
    return cached_examples(path, facts, embedder, chunk_sizes=data.chunk_sizes,
                           top_k=data.top_k, lexical_weight=data.lexical_weight,
                           min_score=data.min_score, forms=data.train_forms,
                           chunk_overlap=data.chunk_overlap, progress=progress)


def example_tokens(encode: Callable[[str], list[int]], example: Example, answer_length: int,
                   end_id: int) -> tuple[list[int], list[int]]:
    """(context + prompt ids, answer ids padded with end of text to `answer_length`); the
    example's passages are best first, as retrieved."""
    answer = encode(example.answer)[: answer_length - 1]
    answer += [end_id] * (answer_length - len(answer))
    passages = [text for text, _ in example.passages]
    return memory_context(encode, passages) + encode(example.prompt), answer


class RetrievalBlockTask:
    """Retrieval examples in batches of right-aligned rows; loss on the answers only."""

    name = "memory"

    def __init__(self, examples: Sequence[Example], encode: Callable[[str], list[int]], *,
                 data: MemoryData, mask_token_id: int, pad_id: int, end_id: int,
                 weight: float) -> None:
        if len(examples) < data.batch_size:
            raise ValueError(f"{len(examples)} memory examples, fewer than one batch")
        self.examples, self.encode, self.data = list(examples), encode, data
        self.mask_token_id, self.pad_id, self.end_id = mask_token_id, pad_id, end_id
        self.weight = weight
        self._tokens: dict[int, tuple[list[int], list[int]]] = {}
        self.shard = (0, 1)

    def batch(self, rng: np.random.Generator) -> dict[str, Any]:
        """``ids`` (batch, width) right-aligned with `pad_id` on the left, ``masked``
        (batch, answer_length): the first noisy copy's masks over the answer."""
        data = self.data
        picked = rng.choice(len(self.examples), size=data.batch_size, replace=False)
        rows = [self._row(int(i)) for i in picked]
        answer = data.answer_length
        prefix = max(len(p) for p, _ in rows)
        prefix += -prefix % data.block_size  # the answer starts on a block boundary
        ids = np.full((len(rows), prefix + answer), self.pad_id, dtype=np.int64)
        for n, (context, answer_ids) in enumerate(rows):
            ids[n, prefix - len(context):] = context + answer_ids
        blocks = answer // data.block_size
        rate = rng.uniform(data.min_rate, 1.0, size=(len(rows), blocks))
        masked = rng.random((len(rows), answer)) < np.repeat(rate, data.block_size, axis=1)
        return shard_rows({"ids": ids, "masked": masked}, self.shard, "memory.batch_size")

    def _row(self, index: int) -> tuple[list[int], list[int]]:
        if index not in self._tokens:
            self._tokens[index] = example_tokens(self.encode, self.examples[index],
                                                 self.data.answer_length, self.end_id)
        return self._tokens[index]

    def loss(self, model: BlockDiffusionLM, batch: dict[str, Any],
             generator: torch.Generator) -> Tensor:
        return answer_block_loss(model, torch.from_numpy(batch["ids"]),
                                 torch.from_numpy(batch["masked"]), self.data.block_size,
                                 self.mask_token_id, self.pad_id)


def answer_mask(ids: Tensor, answer: int, block_size: int, pad_id: int) -> Tensor:
    """The ``(batch, 1, n, n)`` attention mask over ``[clean row | noisy answer 1 | noisy
    answer 2]`` (n = width + 2 * answer): `training_mask` with noisy copies of the answer
    alone; True = may attend. Left padding is never attended (a padding position sees itself,
    so no softmax row is empty)."""
    batch, width = ids.shape
    mask = training_mask(width, block_size, 2, start=width - answer)[0]  # (1, n, n)
    keys = torch.cat([ids != pad_id, torch.ones(batch, 2 * answer, dtype=torch.bool)], dim=1)
    mask = mask & keys[:, None, :]
    mask |= torch.eye(mask.shape[-1], dtype=torch.bool)[None]
    return mask[:, None]


def answer_block_loss(model: BlockDiffusionLM, ids: Tensor, masked: Tensor, block_size: int,
                      mask_token_id: int, pad_id: int) -> Tensor:
    """Mean cross-entropy over every answer token (each a target once: a block's first token
    from the clean position before it, as the AR model predicts it; the others from the noisy
    copy that masks them)."""
    batch, width = ids.shape
    answer = masked.shape[1]
    start = width - answer
    clean_answer = ids[:, start:]
    noisy = [torch.where(masked, mask_token_id, clean_answer),
             torch.where(~masked, mask_token_id, clean_answer)]
    tokens = torch.cat([ids, *noisy], dim=1)
    real = (ids != pad_id).long()
    positions = (real.cumsum(1) - 1).clamp(min=0)  # each row counts from its first real token
    positions = torch.cat([positions, positions[:, start:], positions[:, start:]], dim=1)
    hidden = model.hidden(tokens, answer_mask(ids, answer, block_size, pad_id), positions)
    offset = torch.arange(answer)
    first = (offset % block_size) == 0
    from_copy = torch.where(masked, width, width + answer) + offset - 1
    predictor = torch.where(first, start + offset - 1, from_copy)  # (batch, answer)
    chosen = hidden[torch.arange(batch)[:, None], predictor]
    logits = model.logits(chosen).float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), clean_answer.reshape(-1))


__all__ = ["MemoryData", "RetrievalBlockTask", "answer_block_loss", "answer_mask",
           "example_tokens", "memory_examples"]
