"""Memory retrieval on invented facts: each embedder and store, against a lexical baseline.

    python benchmarks/memory.py                          # 400 facts, every embedder and store
    python benchmarks/memory.py --facts 1000 --text-model DIR

The memory holds every fact of `aios_text.facts` (training and held-out), one rendering each
(templates in turn), written as documents of paragraphs and added with the real ingestion path
(`aios.memory.ingest`: chunking, embedding, storing). The questions are those of the held-out
facts ("Where does the river Quell flow?"), asked through the memory conditioner (embed the
question, search the store, re-rank the 50 nearest by the question's words when the word
weight is above 0). A retrieved passage is relevant when it contains the fact's sentence.

Scores: hit@5 is the fraction of questions whose fact is among the 5 passages retrieved (what
the issue's "precision@5 >= 0.8" asks for: with one relevant passage per question, strict
precision@5 cannot exceed 0.2); p@1 and MRR@5 say how high it ranks. Baselines in the same run:
chance (5 / passages) and TF-IDF over words (a lexical embedder fitted on the memory's text).
Costs: ingestion (chunks per second, embedding included), and per query the median of embedding
it, searching the store for the top 5, and the whole conditioning step (both, plus building the
request), in milliseconds.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from aios_text.facts import make_facts, write_fact_documents
from samplers import table  # benchmarks/ is on the path when a benchmark runs as a script

from aios.memory import open_memory
from aios.memory.conditioner import MemoryConditioner
from aios.memory.embedding import build_embedder, embed_in_batches
from aios.memory.ingest import ingest
from aios.protocols import EngineContext, GenerationRequest
from aios.registry import default_registry

K = 5


class TfidfEmbedder:
    """The lexical baseline: TF-IDF over lower-case words, fitted on the memory's text."""

    name = "tf-idf (baseline)"

    def __init__(self, corpus: Sequence[str]) -> None:
        documents = [set(_words(t)) for t in corpus]
        vocabulary = sorted(set().union(*documents))
        self.index = {w: i for i, w in enumerate(vocabulary)}
        counts = Counter(w for d in documents for w in d)
        self.idf = np.array([math.log((1 + len(documents)) / (1 + counts[w])) + 1
                             for w in vocabulary], np.float32)
        self.dim = len(vocabulary)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word, n in Counter(_words(text)).items():
                if word in self.index:
                    out[row, self.index[word]] = n * self.idf[self.index[word]]
        return out

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return embed_in_batches(texts, self._embed_batch, dim=self.dim, batch_size=256,
                                progress=progress, name=self.name)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def median_ms(function: Callable[[], object], repeats: int) -> float:
    function()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def run(embedder, backend: str, chunk_size: int, documents: Path,
        questions: list[tuple[str, str]], args: argparse.Namespace, base: Path) -> list[list[str]]:
    """One row per word weight of the conditioner's re-ranking, over one filled store."""
    path = base / f"store-{backend}-{chunk_size}-{re.sub(r'[^a-z0-9]+', '-', embedder.name)}"
    rows = []
    with open_memory(path, embedder.dim, backend=backend) as store:
        start = time.perf_counter()
        summary = ingest(store, embedder, [documents], chunk_size=chunk_size,
                         chunk_overlap=args.chunk_overlap)
        ingest_s = time.perf_counter() - start
        sample = questions[0][0]
        query = embedder.embed([sample])[0]
        embed_ms = median_ms(lambda: embedder.embed([sample]), args.repeats)
        search_ms = median_ms(lambda: store.search(query, K), args.repeats)
        request = GenerationRequest(prompt=sample, modality="text", num_steps=1)
        for weight in args.lexical_weights:
            conditioner = MemoryConditioner(top_k=K, min_score=-1.0, lexical_weight=weight)
            context = EngineContext(head=None, storage=store, embedder=embedder)  # type: ignore[arg-type]
            hits = first = 0
            reciprocal = 0.0
            for question, sentence in questions:
                found = [p.text for p in conditioner.retrieve(question, context)]
                ranks = [i for i, text in enumerate(found) if sentence in text]
                if ranks:
                    hits += 1
                    first += ranks[0] == 0
                    reciprocal += 1 / (ranks[0] + 1)
            condition_ms = median_ms(lambda c=conditioner, x=context: c.condition(request, x),
                                     args.repeats)
            n = len(questions)
            rows.append([embedder.name, f"{weight:g}", backend, str(embedder.dim),
                         str(chunk_size), str(summary.chunks), f"{hits / n:.3f}",
                         f"{first / n:.3f}", f"{reciprocal / n:.3f}",
                         f"{summary.chunks / ingest_s:,.0f}", f"{embed_ms:.2f}",
                         f"{search_ms:.3f}", f"{condition_ms:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facts", type=int, default=400, help="facts in the memory")
    parser.add_argument("--held-out", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[60, 160],
                        help="characters per passage: 60 holds one fact, 160 about three")
    parser.add_argument("--chunk-overlap", type=int, default=0)
    parser.add_argument("--lexical-weights", type=float, nargs="+", default=[0.0, 0.5],
                        help="the conditioner's word re-ranking weights (0: embedding alone; "
                        "0.5: the default)")
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats per latency")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default; 1 is far faster on a busy CPU)")
    parser.add_argument("--embedders", nargs="+", help="only these (default: all installed)")
    parser.add_argument("--text-model", default="",
                        help="text model for the text-backbone embedder (default: the shipped)")
    args = parser.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    facts = make_facts(args.facts, held_out=args.held_out, seed=args.seed)
    memory = facts.train + facts.held_out
    base = Path(tempfile.mkdtemp(prefix="aios-memory-bench-"))
    try:
        stored = write_fact_documents(memory, base / "docs")
        sentence_of = dict(zip((f.subject for f in memory), stored, strict=True))
        questions = [(q, sentence_of[f.subject]) for f in facts.held_out for q in f.questions]
        embedders = [TfidfEmbedder(stored)]
        for name in args.embedders or default_registry().names("embedder"):
            try:
                if name == "text-backbone" and args.text_model:
                    from aios_text.embedders import TextBackboneEmbedder

                    embedders.append(TextBackboneEmbedder(model=args.text_model))
                else:
                    embedders.append(build_embedder(name))
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                print(f"embedder {name}: not measured ({exc})", file=sys.stderr)
        rows = [row for size in args.chunk_sizes for e in embedders
                for backend in default_registry().names("storage")
                for row in run(e, backend, size, base / "docs", questions, args, base)]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    chance = {row[4]: f"{K / int(row[5]):.3f}" for row in rows}
    print(f"\n{len(memory)} facts in memory ({len(facts.held_out)} held out), "
          f"{len(questions)} questions on held-out facts, top {K}; chance hit@{K} by chunk "
          f"size: {chance}; torch threads: {args.threads or 'default'}")
    header = ["embedder", "word weight", "store", "dim", "chunk", "chunks", f"hit@{K}", "p@1",
              f"MRR@{K}", "ingest chunks/s", "embed ms", "search ms", "condition ms"]
    print(table(header, rows))

if __name__ == "__main__":
    main()
