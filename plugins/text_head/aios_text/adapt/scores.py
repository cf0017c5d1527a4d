"""How good generated English is, judged by things nobody here trained.

- generative perplexity: exp of the mean negative log-likelihood of the generated tokens under
  the base AR model (SmolLM2, causal), given the prompt;
- dictionary share: the share of generated words (runs of letters) found in a word list
  (Debian `wamerican`: /usr/share/dict/words), case-insensitive;
- distinct share: distinct token ids over generated tokens, so that repetition (which lowers
  perplexity) cannot pass unnoticed.

And how well the adapted model models held-out text, against the base model's exact
perplexity on the same tokens (`perplexity_bound`, `ar_perplexity`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch

WORDS_FILE = Path("/usr/share/dict/words")


@torch.inference_mode()
def generative_perplexity(scorer: Any, samples: Sequence[tuple[list[int], list[int]]]) -> float:
    """exp(mean NLL) of every continuation token under `scorer` (a `transformers` causal LM
    network), each sample ``(prompt ids, continuation ids)`` scored given its prompt."""
    total, count = 0.0, 0
    for prompt, continuation in samples:
        if not continuation:
            continue
        ids = torch.tensor([prompt + continuation])
        logits = scorer(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, len(prompt):], reduction="sum")
        total += float(nll)
        count += len(continuation)
    return math.exp(total / max(count, 1))


@cache
def dictionary(path: Path = WORDS_FILE) -> frozenset[str]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the Debian package `wamerican`")
    return frozenset(w.strip().lower() for w in path.read_text(errors="replace").splitlines())


def dictionary_share(texts: Iterable[str], words: frozenset[str] | None = None) -> float:
    """Share of the words of `texts` found in the word list."""
    words = dictionary() if words is None else words
    found = [w.lower() in words for t in texts for w in re.findall(r"[A-Za-z]+", t)]
    return sum(found) / len(found) if found else 0.0


def distinct_share(samples: Iterable[Sequence[int]]) -> float:
    """Mean over samples of distinct tokens / tokens."""
    shares = [len(set(s)) / len(s) for s in samples if len(s)]
    return sum(shares) / len(shares) if shares else 0.0


@torch.inference_mode()
def ar_perplexity(network: Any, windows: torch.Tensor, context: int) -> float:
    """exp(mean NLL) of every token of `windows` ``(n, length)`` after the first `context`
    ones, under a causal `transformers` network: exact."""
    total, count = 0.0, 0
    for row in windows:
        logits = network(input_ids=row[None]).logits[0, context - 1:-1].float()
        total += float(torch.nn.functional.cross_entropy(logits, row[context:], reduction="sum"))
        count += len(row) - context
    return math.exp(total / count)


@torch.inference_mode()
def perplexity_bound(model: Any, windows: torch.Tensor, block_size: int, *, samples: int = 4,
                     seed: int = 0) -> float:
    """An upper bound on the adapted model's perplexity of `windows` ``(n, length)`` after
    their first block (the context), estimated by Monte Carlo (unbiased for the bound).

    The generative model the bound is for is how the model decodes: block by block, each
    block's first token from the AR head (the clean copy's last state: an exact conditional),
    the other ``L = block_size - 1`` tokens by masked diffusion given the prefix and that
    first token. For the diffusion part, LLaDA's form of the ELBO: draw ``l`` uniformly from
    1..L, mask a random ``l`` of the L positions, and weight the masked positions' log
    likelihoods by ``L / l``; its expectation is a lower bound on ``log p(block | prefix)``
    (with L = 1 it is exact). `samples` draws per block are averaged."""
    from aios_text.adapt.model import training_mask

    n, length = windows.shape
    if length % block_size or length < 2 * block_size or block_size < 2:
        raise ValueError(f"windows of {length} tokens need blocks of 2..{length // 2} that "
                         f"divide them; got {block_size}")
    rng = torch.Generator().manual_seed(seed)
    pos = torch.arange(length)
    first = pos % block_size == 0
    scored = pos >= block_size  # the first block is context
    inner = (~first).sum().item() // (length // block_size)  # L, per block
    attention = training_mask(length, block_size, copies=1)
    total = 0.0
    for row in windows:
        # the first token of every block, from the clean (causal) copy: exact
        for draw in range(samples):
            counts = torch.randint(1, inner + 1, (length // block_size,), generator=rng)
            order = torch.rand(length, generator=rng).masked_fill(first, 2.0)
            # within each block, mask the `l` non-first positions with the lowest draws
            ranks = order.view(-1, block_size).argsort(-1).argsort(-1).view(-1)
            masked = (ranks < counts.repeat_interleave(block_size)) & ~first
            noisy = torch.where(masked, model.mask_token_id, row)
            tokens = torch.cat([row, noisy])[None]
            hidden = model.hidden(tokens, attention, pos.repeat(2)[None])[0]
            targets = masked & scored
            logp = torch.log_softmax(model.logits(hidden[length + pos[targets] - 1]).float(), -1)
            weights = (inner / counts.repeat_interleave(block_size))[targets]
            total += float((logp.gather(1, row[targets][:, None])[:, 0] * weights).sum()) / \
                samples
            if draw == 0:
                heads = first & scored
                logp = torch.log_softmax(model.logits(hidden[pos[heads] - 1]).float(), -1)
                total += float(logp.gather(1, row[heads][:, None]).sum())
    return math.exp(-total / (n * (length - block_size)))


__all__ = ["WORDS_FILE", "ar_perplexity", "dictionary", "dictionary_share", "distinct_share",
           "generative_perplexity", "perplexity_bound"]
