"""Token streams and the training tasks of the text head.

A split of the corpus becomes one int32 array of token ids, documents joined by `<eos>`, so
training windows can start anywhere (the model learns to continue past a document's end, and to
predict `<eos>`). Windows are drawn with the step's random generator, which is what makes a
resumed training run identical to an uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from aios.io import write_atomic
from aios_text.corpus import Document
from aios_text.diffusion import Alpha, mdlm_loss
from aios_text.tokenizer import TextTokenizer


class TokenStream:
    """Token ids of a whole split, one flat int32 array."""

    def __init__(self, ids: np.ndarray) -> None:
        ids = np.asanyarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"a token stream is a 1-D integer array, got {ids.dtype} {ids.shape}")
        self.ids = ids.astype(np.int32, copy=False)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_documents(cls, documents: Iterable[Document], tokenizer: TextTokenizer,
                       batch: int = 512, progress: bool = True) -> TokenStream:
        documents = list(documents)
        pieces: list[np.ndarray] = []
        eos = np.array([tokenizer.eos_id], dtype=np.int32)
        for start in tqdm(range(0, len(documents), batch), desc="tokenizing", unit="batch",
                          disable=not progress):
            chunk = documents[start:start + batch]
            for ids in tokenizer.encode_batch([d.text for d in chunk]):
                pieces += [np.asarray(ids, dtype=np.int32), eos]
        return cls(np.concatenate(pieces) if pieces else np.zeros(0, np.int32))

    def windows(self, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
        """`batch` windows of `length` tokens at random offsets."""
        if len(self.ids) < length:
            raise ValueError(f"the stream has {len(self.ids)} tokens, fewer than one window of "
                             f"{length}; add text or shorten the window")
        starts = rng.integers(0, len(self.ids) - length + 1, size=batch)
        return self.ids[starts[:, None] + np.arange(length)]

    def chunks(self, length: int) -> np.ndarray:
        """The stream cut into consecutive non-overlapping windows (for evaluation)."""
        count = len(self.ids) // length
        return self.ids[: count * length].reshape(count, length)

    def save(self, path: str | os.PathLike[str]) -> None:
        write_atomic(path, lambda f: np.save(f, self.ids))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TokenStream:
        return cls(np.load(path, mmap_mode="r"))


@dataclass
class MaskedDiffusionTask:
    """Training task of the text head: the MDLM loss on random windows of a token stream."""

    stream: TokenStream
    alpha: Alpha
    mask_id: int
    length: int = 128
    batch_size: int = 32
    name: str = "text"
    weight: float = 1.0

    def batch(self, rng: np.random.Generator) -> Tensor:
        return torch.from_numpy(self.stream.windows(rng, self.batch_size, self.length)).long()

    def loss(self, model: nn.Module, batch: Tensor, generator: torch.Generator) -> Tensor:
        return mdlm_loss(model, batch, self.alpha, self.mask_id, generator)


def causal_mask(length: int) -> Tensor:
    return torch.ones(length, length, dtype=torch.bool).tril()[None]


@dataclass
class AutoregressiveTask:
    """The baseline: the same backbone and head trained left to right (causal attention).

    It reuses the diffusion model's call with t = 0 (no noise) and a causal mask, so the two
    models have exactly the same parameters and data; only the objective differs.
    """

    stream: TokenStream
    length: int = 128
    batch_size: int = 32
    name: str = "autoregressive"
    weight: float = 1.0

    def batch(self, rng: np.random.Generator) -> Tensor:
        return torch.from_numpy(self.stream.windows(rng, self.batch_size, self.length + 1)).long()

    def loss(self, model: nn.Module, batch: Tensor, generator: torch.Generator) -> Tensor:
        return autoregressive_nll(model, batch)


def autoregressive_nll(model: nn.Module, batch: Tensor) -> Tensor:
    """Mean next-token negative log-likelihood (nats) of windows of length + 1."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    t = torch.zeros(inputs.shape[0])
    logits = model(inputs, t, attention_mask=causal_mask(inputs.shape[1]))
    return F.cross_entropy(logits.transpose(1, 2).float(), targets)


@torch.no_grad()
def evaluate_nelbo(model: nn.Module, stream: TokenStream, alpha: Alpha, mask_id: int, *,
                   length: int = 128, max_windows: int = 256, samples: int = 4,
                   seed: int = 0, batch_size: int = 32) -> float:
    """Mean negative ELBO (nats per token) over the stream's first windows; exp() of it bounds
    the perplexity. Several draws of t per window reduce the Monte-Carlo noise."""
    model.eval()
    windows = _evaluation_windows(stream, length, max_windows)
    generator = torch.Generator().manual_seed(seed)
    draws = [_batched_mean(windows, batch_size,
                           lambda part: mdlm_loss(model, part, alpha, mask_id, generator))
             for _ in range(samples)]
    return sum(draws) / samples


@torch.no_grad()
def evaluate_autoregressive(model: nn.Module, stream: TokenStream, *, length: int = 128,
                            max_windows: int = 256, batch_size: int = 32) -> float:
    """Mean next-token NLL (nats per token) of the autoregressive baseline on the same windows."""
    model.eval()
    windows = _evaluation_windows(stream, length + 1, max_windows)
    return _batched_mean(windows, batch_size, lambda part: autoregressive_nll(model, part))


def _evaluation_windows(stream: TokenStream, length: int, max_windows: int) -> Tensor:
    windows = torch.tensor(stream.chunks(length)[:max_windows], dtype=torch.long)
    if not len(windows):
        raise ValueError("the stream is shorter than one evaluation window")
    return windows


def _batched_mean(windows: Tensor, batch_size: int, loss: Callable[[Tensor], Tensor]) -> float:
    """The mean per-window loss, computed `batch_size` windows at a time."""
    total = 0.0
    for start in range(0, len(windows), batch_size):
        part = windows[start:start + batch_size]
        total += float(loss(part)) * len(part)
    return total / len(windows)
