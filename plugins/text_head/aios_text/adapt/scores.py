"""How good generated English is, judged by things nobody here trained.

- generative perplexity: exp of the mean negative log-likelihood of the generated tokens under
  the base AR model (SmolLM2, causal), given the prompt;
- dictionary share: the share of generated words (runs of letters) found in a word list
  (Debian `wamerican`: /usr/share/dict/words), case-insensitive;
- distinct share: distinct token ids over generated tokens, so that repetition (which lowers
  perplexity) cannot pass unnoticed.
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


__all__ = ["WORDS_FILE", "dictionary", "dictionary_share", "distinct_share",
           "generative_perplexity"]
