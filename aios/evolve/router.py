"""The evolution router: which adapters a request gets, from where its text lies.

Each kept adapter leaves a few centroids of its training text's embeddings in an ArrowStorage
memory store (`DIR/centroids` beside the adapter files), and the model's own training text leaves
centroids under the name `base`. A request is embedded with the same embedder and compared with
every centroid: when a `base` centroid is nearest the request gets no adapter; otherwise every
adapter that is nearer than the nearest `base` centroid takes part, weighted by a softmax of
its similarity (one adapter: weight 1; several: the L0 weighted composition of their logits).
Several centroids per name (16, by k-means) let one name cover a mixed domain (the base
model's scripture, plays and jokes are far apart from one another). The embedder is the
memory's: on the benchmark's mixed stream MiniLM routes 100% of prompts right with 16
centroids, the text model's own mean-pooled states 88-92%.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aios.errors import AiosError

#: The centroid name of the model's own training distribution (nearest: no adapter).
BASE = "base"
CENTROIDS = "centroids"
CATEGORY = "adapter-centroid"


@dataclass(frozen=True)
class RouterChoice:
    """Adapter weights for one request, and each name's best similarity (for --explain)."""

    weights: dict[str, float]
    similarities: dict[str, float] = field(default_factory=dict)


def kmeans(vectors: np.ndarray, k: int, iterations: int = 20) -> np.ndarray:
    """Up to `k` unit-length centroids of unit-length `vectors` (spherical k-means with
    farthest-point initialisation: deterministic, no random seed)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or not len(vectors):
        raise ValueError("k-means needs a non-empty (n, dim) array")
    centroids = [vectors[0]]
    while len(centroids) < min(k, len(vectors)):
        similarity = (vectors @ np.array(centroids).T).max(axis=1)
        centroids.append(vectors[int(np.argmin(similarity))])
    centres = np.array(centroids)
    for _ in range(iterations):
        owner = np.argmax(vectors @ centres.T, axis=1)
        for j in range(len(centres)):
            members = vectors[owner == j]
            if len(members):
                mean = members.mean(axis=0)
                centres[j] = mean / max(np.linalg.norm(mean), 1e-12)
    return centres


class AdapterRouter:
    """Centroids in a memory store under `directory`, queried with `embedder`."""

    def __init__(self, directory: str | os.PathLike[str], embedder: Any, *,
                 temperature: float = 0.02) -> None:
        self.path = Path(directory) / CENTROIDS
        self.embedder = embedder
        self.temperature = temperature
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from aios.memory import open_memory

            dim = getattr(self.embedder, "dim", None)
            self._store = open_memory(self.path, dim=None if dim is None else int(dim))
        return self._store

    def names(self) -> list[str]:
        if not self.path.exists():
            return []
        table = self.store.to_table()
        return sorted(set(table.column("metadata").combine_chunks().field("source").to_pylist()))

    def set_centroids(self, name: str, texts: list[str], k: int = 16) -> int:
        """Replace `name`'s centroids by `k` k-means centroids of the texts' embeddings."""
        vectors = self.embedder.embed(texts)
        centres = kmeans(vectors, k)
        self.remove(name)
        self.store.add(embeddings=centres, contents=[f"centroid {i} of {name}"
                                                     for i in range(len(centres))],
                       category=CATEGORY, source=name,
                       extra=[{"embedder": self.embedder.name}] * len(centres))
        self.store.flush()
        return len(centres)

    def remove(self, name: str) -> None:
        if not self.path.exists():
            return
        table = self.store.to_table()
        sources = table.column("metadata").combine_chunks().field("source").to_pylist()
        ids = [i for i, s in zip(table.column("id").to_pylist(), sources, strict=True)
               if s == name]
        if ids:
            self.store.delete(ids)
            self.store.flush()

    def choose(self, text: str, allowed: list[str] | None = None) -> RouterChoice:
        """The adapters for `text` (see the module docstring); `allowed` limits the candidates
        to adapters that still exist."""
        names = self.names()
        if BASE not in names:
            raise AiosError(f"the router has no `{BASE}` centroids in {self.path}; run "
                            "`aios evolve` once (it records them)")
        stored = {json.loads(e or "{}").get("embedder") for e in self.store.to_table().column(
            "metadata").combine_chunks().field("extra").to_pylist()}
        if stored != {self.embedder.name}:
            raise AiosError(f"the router's centroids in {self.path} were embedded with "
                            f"{sorted(map(str, stored))} but this request with "
                            f"{self.embedder.name!r}; use that embedder (memory.embedder) or "
                            "record them again with `aios evolve`")
        query = self.embedder.embed([text])[0]
        result = self.store.search(query, k=max(1, self.store.count()))
        best: dict[str, float] = {}
        sources = result.records.column("metadata").combine_chunks().field("source").to_pylist()
        for source, score in zip(sources, result.scores, strict=True):
            if source == BASE or allowed is None or source in allowed:
                best[source] = max(best.get(source, -np.inf), float(score))
        base = best.get(BASE, -np.inf)
        winners = {n: s for n, s in best.items() if n != BASE and s > base}
        if not winners:
            return RouterChoice({}, best)
        scores = np.array(list(winners.values()))
        weights = np.exp((scores - scores.max()) / self.temperature)
        weights /= weights.sum()
        kept = {n: float(w) for n, w in zip(winners, weights, strict=True) if w >= 0.05}
        total = sum(kept.values())
        return RouterChoice({n: w / total for n, w in kept.items()}, best)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
