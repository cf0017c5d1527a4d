"""How retrieved memory is laid out in front of a prompt, in one place for generation and training.

The head builds its context with `context_ids`, and the retrieval-augmented training recipe
builds its examples with the same function, so a model trained to read memory sees exactly the
layout it will get at generation: `[passage] <eos> ... [best passage] <eos> [prompt]`.

Each passage is encoded with one leading space, as a word in running text is. A byte-level BPE
splits a word differently at the start of a text ("Grurnpux" -> "G r urn p ux") than after a
space (" Gr urn p ux"); an answer that begins a passage must be copied into the middle of a
sentence, so the passage has to hold it in the mid-sentence pieces the answer is written with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Encoder(Protocol):
    eos_id: int

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...


def context_ids(tokenizer: Encoder, context: Sequence[Any], budget: int) -> list[int]:
    """Token ids of the context passages that fit in `budget` tokens, each closed by eos.

    Items are passages with `text` and `score` (retrieved memory) or plain strings (kept in
    front, as the most important). The lowest-scored are dropped until the rest fit; the best
    ends up next to the prompt, where a short-context model attends to it most easily.
    """
    items = [(getattr(c, "score", float("inf")), getattr(c, "text", c)) for c in context]
    if not items:
        return []
    bad = next((t for _, t in items if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"the text head takes text context, got {type(bad).__name__}")
    encoded = tokenizer.encode_batch([" " + t.lstrip() for _, t in items])
    ranked = sorted(range(len(items)), key=lambda i: -items[i][0])  # best first, stable
    kept: list[int] = []
    used = 0
    for i in ranked:
        if used + len(encoded[i]) + 1 > budget:
            break  # everything after it scores lower still
        kept.append(i)
        used += len(encoded[i]) + 1
    ids: list[int] = []
    for i in reversed(kept):  # lowest kept first, best right before the prompt
        ids += encoded[i] + [tokenizer.eos_id]
    return ids
