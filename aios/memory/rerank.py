"""Lexical re-ranking of retrieved passages: the words of the prompt, weighed by rarity.

A sentence embedder places a text by its meaning, and a name it has never seen carries little
of it: "Where does the river Graesdousk flow?" lands near every passage about a river flowing
into a sea, and the one that names Graesdousk is not always the nearest. Exact words are what a
name is. So the memory conditioner takes more candidates than it keeps, by embedding, and
re-ranks them by cosine similarity plus the share of the prompt's words each one holds, every
word weighed by its inverse document frequency among the candidates: words that all of them
share ("river", "the") count for almost nothing, a word only one of them holds counts most.
This is the usual hybrid of dense and sparse retrieval, with the sparse part scored over the
candidates instead of a full inverted index, so the store needs nothing new.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")


def words(text: str) -> set[str]:
    """The distinct words of `text`, case-folded (letters and digits of any script)."""
    return {w.casefold() for w in _WORD.findall(text)}


def lexical_overlap(query: str, texts: Sequence[str]) -> np.ndarray:
    """For each text, the IDF-weighted share of the query's words that it holds, in [0, 1].

    The inverse document frequency is counted over `texts` (the candidates), smoothed so that
    a word every candidate holds still weighs a little more than nothing. Query words that no
    candidate holds are left out of the share: they tell the candidates nothing apart."""
    held = [words(t) for t in texts]
    frequency = Counter(w for h in held for w in h & words(query))
    weight = {w: math.log((len(held) + 1) / (n + 0.5)) for w, n in frequency.items()}
    total = sum(weight.values())
    if not total:
        return np.zeros(len(held))
    return np.array([sum(weight[w] for w in h & weight.keys()) / total for h in held])


def rerank(query: str, texts: Sequence[str], similarities: Sequence[float],
           lexical_weight: float) -> tuple[list[int], np.ndarray]:
    """The order of the candidates by `similarity + lexical_weight * lexical_overlap`, best
    first (ties keep the embedding's order), and those combined scores (in the input order)."""
    combined = np.asarray(similarities, dtype=np.float64)
    if lexical_weight:
        combined = combined + lexical_weight * lexical_overlap(query, texts)
    order = sorted(range(len(texts)), key=lambda i: -combined[i])
    return order, combined
