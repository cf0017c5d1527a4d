"""The adaptation objective: masked-token loss on noisy blocks given the clean prefix.

`BlockDiffusionTask` is a `aios.training.TrainTask`. A batch is drawn from the numpy generator
alone (windows, and per block a masking rate t ~ U(t_min, 1) with each token masked with
probability t), so a step is reproducible from its seed and a batch can be cut into equal
shards for data-parallel processes that together compute exactly the one-process loss.

Complementary masks (as in LLaDA 1.5 and SDAR): the second noisy copy masks exactly the tokens
the first left visible, so every token of the window is a target once per step and no forward
work is spent on a copy with nothing to predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from aios_text.adapt.model import BlockDiffusionLM, training_mask


@dataclass
class WindowSource:
    """A flat token stream (documents separated by the end-of-text id) and its share."""

    name: str
    ids: np.ndarray
    weight: float


class BlockDiffusionTask:
    """Windows from weighted sources; loss = mean cross-entropy over every masked target."""

    name = "block-diffusion"
    weight = 1.0

    def __init__(self, sources: list[WindowSource], *, length: int, batch_size: int,
                 block_sizes: tuple[int, ...], mask_token_id: int,
                 min_rate: float = 0.05) -> None:
        uneven = [b for b in block_sizes if b < 1 or length % b]
        if not block_sizes or uneven:
            raise ValueError(f"window length {length} is not a multiple of block sizes "
                             f"{uneven or block_sizes}")
        short = [s.name for s in sources if len(s.ids) <= length]
        if short:
            raise ValueError(f"sources {short} hold fewer tokens than one window of {length}")
        self.sources = sources
        weights = np.array([s.weight for s in sources], dtype=float)
        self.shares = weights / weights.sum()
        self.length, self.batch_size, self.block_sizes = length, batch_size, block_sizes
        self.mask_token_id, self.min_rate = mask_token_id, min_rate
        self.shard = (0, 1)  # (rank, world size) of a data-parallel run

    def batch(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``ids`` (batch, length), ``masked`` (batch, length): the first copy's masks, and
        ``block_size``, drawn per step from `block_sizes` (several sizes let one model decode
        short blocks fast and fill a long gap as one block)."""
        rows = []
        for source in rng.choice(len(self.sources), size=self.batch_size, p=self.shares):
            ids = self.sources[int(source)].ids
            start = int(rng.integers(0, len(ids) - self.length))
            rows.append(ids[start:start + self.length])
        size = int(self.block_sizes[int(rng.integers(len(self.block_sizes)))])
        blocks = self.length // size
        rate = rng.uniform(self.min_rate, 1.0, size=(self.batch_size, blocks))
        draws = rng.random((self.batch_size, self.length))
        masked = draws < np.repeat(rate, size, axis=1)
        batch: dict[str, Any] = shard_rows({"ids": np.stack(rows).astype(np.int64),
                                            "masked": masked}, self.shard, "batch_size")
        batch["block_size"] = size
        return batch

    def loss(self, model: BlockDiffusionLM, batch: dict[str, Any],
             generator: torch.Generator) -> Tensor:
        return block_diffusion_loss(model, torch.from_numpy(batch["ids"]),
                                    torch.from_numpy(batch["masked"]), batch["block_size"],
                                    self.mask_token_id)


def shard_rows(batch: dict[str, np.ndarray], shard: tuple[int, int],
               setting: str) -> dict[str, np.ndarray]:
    """This process's equal share of the rows of every array in `batch` (all of them for one
    process); `setting` names the batch size a data-parallel run could not split."""
    rank, world = shard
    if world == 1:
        return batch
    rows = len(next(iter(batch.values())))
    if rows % world:
        raise ValueError(f"{setting} {rows} does not split evenly over {world} processes")
    per = rows // world
    return {k: v[rank * per:(rank + 1) * per] for k, v in batch.items()}


def block_diffusion_loss(model: BlockDiffusionLM, ids: Tensor, masked: Tensor,
                         block_size: int, mask_token_id: int) -> Tensor:
    """Mean cross-entropy of every target (each token once: masked in copy 1 or copy 2)."""
    batch, length = ids.shape
    noisy = [torch.where(masked, mask_token_id, ids), torch.where(~masked, mask_token_id, ids)]
    tokens = torch.cat([ids, *noisy], dim=1)
    positions = torch.arange(length).repeat(3)[None].expand(batch, -1)
    attention = training_mask(length, block_size, copies=2).expand(batch, -1, -1, -1)
    hidden = model.hidden(tokens, attention, positions)  # (batch, 3 * length, dim)
    targets, predictors = target_positions(masked, block_size)
    rows = torch.arange(batch)[:, None]
    chosen = hidden[rows.expand_as(predictors)[targets.ge(0)], predictors[targets.ge(0)]]
    logits = model.logits(chosen).float()
    return F.cross_entropy(logits, ids[rows.expand_as(targets)[targets.ge(0)],
                                       targets[targets.ge(0)]])


def target_positions(masked: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """For every (row, target) pair: the target position (or -1 for none) and the index in
    ``[clean | noisy_1 | noisy_2]`` of the hidden state that predicts it (shift by one; a
    block's first token from the clean copy)."""
    batch, length = masked.shape
    pos = torch.arange(1, length)
    first = (pos % block_size) == 0
    per_copy = []
    for copy, hidden_of in ((1, masked), (2, ~masked)):
        is_target = hidden_of[:, 1:]
        predictor = torch.where(first, pos - 1, copy * length + pos - 1).expand(batch, -1)
        # a block's first token is predicted from the clean copy: count it in one copy only
        keep = is_target & ~(first & (copy == 2))
        keep = keep | (first & (copy == 1))
        target = torch.where(keep, pos.expand(batch, -1), -1)
        per_copy.append((target, predictor))
    targets = torch.cat([t for t, _ in per_copy], dim=1)
    predictors = torch.cat([p for _, p in per_copy], dim=1)
    return targets, predictors


__all__ = ["BlockDiffusionTask", "WindowSource", "block_diffusion_loss", "shard_rows",
           "target_positions"]
