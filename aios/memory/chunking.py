"""Splitting documents into passages for the memory: sentence and paragraph aware.

A passage is what retrieval returns and what the text head puts before a prompt, so it should
be a whole thought: chunks end at sentence ends, prefer paragraph ends, and only a sentence
longer than a whole chunk is cut (at a space). Consecutive chunks share up to `overlap`
characters of whole sentences, so a fact split across a boundary is still found whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_PARAGRAPH = re.compile(r"\n[ \t]*\n+")
# A sentence ends at . ! ? (optionally closed by a quote or bracket) followed by white space.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+")


def sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph, white space collapsed."""
    text = " ".join(paragraph.split())
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()] if text else []


def _pieces(sentence: str, size: int) -> Iterator[str]:
    """A sentence longer than `size`, cut at spaces (or hard, for a space-less run).

    It walks an index instead of re-slicing the rest, so a sentence of n characters costs
    O(n), not O(n²/size): a 50 MB line without a sentence end used to hang `memory add`.
    """
    start, end = 0, len(sentence)
    while end - start > size:
        cut = sentence.rfind(" ", start, start + size + 1)
        cut = cut if cut > start else start + size
        piece = sentence[start:cut].strip()
        if piece:
            yield piece
        start = cut
        while start < end and sentence[start].isspace():
            start += 1
    if start < end:
        yield sentence[start:].strip()


def chunk_text(text: str, size: int = 200, overlap: int = 50) -> list[str]:
    """Passages of at most `size` characters covering `text`, in order.

    Sentences are packed greedily; a new paragraph closes the current chunk once it is at least
    half full. The next chunk starts with the last whole sentences of the previous one that fit
    in `overlap` characters (never the whole previous chunk, so chunking always advances).
    """
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"chunk overlap must be at least 0 and less than the size {size}, "
                         f"got {overlap}")
    units: list[tuple[str, bool]] = []  # (sentence, starts a paragraph)
    for paragraph in _PARAGRAPH.split(text):
        for n, sentence in enumerate(sentences(paragraph)):
            units += [(piece, n == 0 and i == 0) for i, piece in
                      enumerate(_pieces(sentence, size))]
    chunks: list[str] = []
    current: list[str] = []
    fresh = False  # whether `current` holds more than the overlap carried from the last chunk

    def length(parts: list[str]) -> int:
        return sum(map(len, parts)) + max(len(parts) - 1, 0)

    for sentence, new_paragraph in units:
        full = length([*current, sentence]) > size
        if fresh and (full or (new_paragraph and length(current) >= size // 2)):
            chunks.append(" ".join(current))
            carried: list[str] = []
            for previous in reversed(current[1:]):
                if length([previous, *carried]) > overlap:
                    break
                carried.insert(0, previous)
            current = carried
        while current and length([*current, sentence]) > size:
            current.pop(0)  # the carried overlap must leave room for the new sentence
        current.append(sentence)
        fresh = True
    if fresh:
        chunks.append(" ".join(current))
    return chunks
