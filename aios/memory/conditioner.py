"""The memory conditioner: the prompt queries the store, and what it finds joins the request.

The retrieved passages go into `request.context` as `Passage` objects, best first, for the
head to use: with placement ``context`` a text head puts their text before the prompt (it keeps
the best ones when they do not all fit). Cross-attention to projected memory vectors would need
a head trained for it; no such head exists yet, so ``context`` is the only placement.

Ranking is hybrid by default: the `candidates` nearest passages by embedding are re-ranked by
cosine similarity plus `lexical_weight` times the share of the prompt's rare words they hold
(`aios.memory.rerank`), since an embedder knows little of names it has never seen. The relevance
threshold stays on the cosine similarity.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np

from aios.errors import AiosError, ConfigError
from aios.memory.ingest import check_store_fits
from aios.memory.rerank import rerank
from aios.protocols import EngineContext, GenerationRequest

#: Where retrieved memory goes; ``context``: in front of the prompt, as text.
PLACEMENTS = ("context",)


@dataclass(frozen=True)
class Passage:
    """One retrieved memory: its text, its relevance to the prompt (the cosine similarity, plus
    the conditioner's lexical weight times its word overlap), and where it came from."""

    text: str
    score: float
    source: str | None = None
    id: str = ""


class MemoryConditioner:
    """Retrieval from the configured memory store: top-k passages above a relevance threshold.

    Options: `top_k` passages at most, `min_score` the least cosine similarity kept (passages
    below it are irrelevant and only crowd the context), `placement` where the head puts them,
    `lexical_weight` how much the prompt's words count beside the embedding (0: embedding only)
    and `candidates` how many nearest passages by embedding are re-ranked for the `top_k`.
    """

    retrieves_memory = True  # `diffuse(memory_guided=False)` skips conditioners marked so

    def __init__(self, top_k: int = 5, min_score: float = 0.3, placement: str = "context",
                 lexical_weight: float = 0.5, candidates: int = 50) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        if not (np.isfinite(lexical_weight) and lexical_weight >= 0):
            raise ValueError(f"lexical_weight must be a finite number >= 0 (0: rank by the "
                             f"embedding alone), got {lexical_weight}")
        if candidates < top_k:
            raise ValueError(f"candidates ({candidates}) are the passages re-ranked for the "
                             f"top_k ({top_k}); it must be at least top_k")
        if not -1.0 <= min_score <= 1.0:
            raise ValueError(f"min_score is a cosine similarity in [-1, 1], got {min_score}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement {placement!r} is not supported; use one of "
                             f"{', '.join(PLACEMENTS)} (cross-attention needs a head trained "
                             "for memory, which no installed head is)")
        self.top_k = top_k
        self.min_score = min_score
        self.placement = placement
        self.lexical_weight = float(lexical_weight)
        self.candidates = candidates if self.lexical_weight else top_k
        self._warned: set[str] = set()

    def retrieve(self, prompt: str, context: EngineContext) -> list[Passage]:
        """The passages for `prompt`, best first."""
        store, embedder = context.storage, context.embedder
        if store is None:
            raise ConfigError("(config)", "memory.path", "memory-guided generation needs a "
                              "memory store", "set it: --memory DIR or --set memory.path=DIR")
        if embedder is None:
            raise AiosError("memory-guided generation needs an embedder; install one "
                            "(`pip install aios-text`)")
        check_store_fits(store, embedder)
        if store.count() == 0:
            raise AiosError(f"the memory store {store.path} is empty; fill it first: "
                            f"aios memory add --path {store.path} FILE_OR_DIR...")
        query = embedder.embed([prompt])[0]
        found = store.search(query, self.candidates, metric="cosine", threshold=self.min_score)
        texts = found.records.column("content").to_pylist()
        metas = found.records.column("metadata").to_pylist()
        order, scores = rerank(prompt, texts, found.scores, self.lexical_weight)
        passages = []
        for i in order[: self.top_k]:
            self._check_embedder(metas[i], embedder.name)
            passages.append(Passage(texts[i], float(scores[i]), metas[i]["source"],
                                    found.ids[i]))
        return passages

    def condition(self, request: GenerationRequest, context: EngineContext) -> GenerationRequest:
        prompts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
        if len(prompts) != 1 or not isinstance(prompts[0], str):
            raise AiosError("memory-guided generation takes one text prompt at a time")
        return request.with_context(*self.retrieve(prompts[0], context))

    def _check_embedder(self, meta: dict, name: str) -> None:
        used = json.loads(meta["extra"] or "{}").get("embedder")
        if used and used != name and used not in self._warned:
            self._warned.add(used)
            print(f"aios: warning: the memory holds vectors of embedder {used!r} but is queried "
                  f"with {name!r}; scores are meaningless across embedders (set "
                  f"memory.embedder={used})", file=sys.stderr)
