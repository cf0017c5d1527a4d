"""Does the default text model read its memory? Held-out facts in held-out sentence forms.

    python benchmarks/memory_read.py                    # the shipped default model, 60 facts
    python benchmarks/memory_read.py --model DIR --scored 100

The facts are those the model's memory training used (`aios_text.facts`, the settings read
from the adapter's recipe: `memory-smollm2.yaml`). The memory holds every fact through the real
ingestion path (`aios.memory.ingest_into`: chunking, MiniLM, the store): the training facts in
the training sentence forms, the held-out facts (never trained on) in the held-out forms
(templates the training memory never held: "In the Daernzum valley lies Quaskbound." where
training only stored "X lies in Y." and "Y is home to X."). Each held-out fact's two questions
and cloze prompt go through `ArrowEngine.diffuse` exactly as `aios generate --memory DIR`
runs them, with and without memory; exact match = the fact's object phrase appears in the
continuation. A second memory stores the held-out facts in the training forms, for contrast.

Costs, medians in milliseconds: a generation with and without memory (the difference is the
added latency), and retrieval alone (embedding the prompt, searching, re-ranking).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aios_text.adapt.shipping import ADAPTER_FILE, adapted_source, read_adapter
from aios_text.facts import Fact, make_facts, write_fact_documents
from aios_text.memory_eval import answer_found
from measure import load_line
from samplers import table  # benchmarks/ is on the path when run as a script

from aios.engine import ArrowEngine
from aios.memory import build_embedder, ingest_into
from aios.memory.conditioner import MemoryConditioner
from aios.protocols import EngineContext


def memory_settings(model: str) -> dict:
    """The `memory:` section of the recipe the adapter was trained with."""
    _, metadata = read_adapter(adapted_source(model) / ADAPTER_FILE, tensors=False)
    recipe = json.loads(metadata["recipe"])
    if not recipe.get("memory", {}).get("weight"):
        raise SystemExit(f"{model or 'the default model'} had no memory training; give one "
                         "trained with memory-smollm2.yaml (--model DIR)")
    return recipe["memory"]


def build_store(directory: Path, parts: Sequence[tuple[Sequence[Fact], Sequence[int]]],
                embedder, chunk_size: int, chunk_overlap: int) -> Path:
    """A store of fact documents: each (facts, sentence forms) part in its own folder."""
    folders = []
    for n, (facts, forms) in enumerate(parts):
        folder = directory / f"docs-{n}"
        write_fact_documents(list(facts), folder, forms=forms)
        folders.append(folder)
    ingest_into(directory / "store", embedder, folders, chunk_size=chunk_size,
                chunk_overlap=chunk_overlap, progress=False)
    return directory / "store"


def run(engine: ArrowEngine, facts: Sequence[Fact], memory: bool) -> tuple[float, float, list]:
    """(exact match, median ms per generation, the first generations)."""
    hits, times, shown = 0, [], []
    prompts = [(p, f.answer) for f in facts for p, _ in f.prompts]
    for prompt, answer in prompts:
        start = time.perf_counter()
        text = engine.diffuse(prompt, seed=0, memory_guided=memory)
        times.append((time.perf_counter() - start) * 1000)
        continuation = text[len(prompt):] if text.startswith(prompt) else text
        hits += answer_found(answer, continuation)
        if len(shown) < 6:
            shown.append({"prompt": prompt, "answer": answer, "generation": continuation})
    return hits / len(prompts), statistics.median(times), shown


def retrieval_ms(engine: ArrowEngine, facts: Sequence[Fact]) -> float:
    conditioner = MemoryConditioner()
    context = EngineContext(head=engine.head, storage=engine.storage, embedder=engine.embedder)
    times = []
    for fact in facts[:20]:
        for prompt, _ in fact.prompts:
            start = time.perf_counter()
            conditioner.retrieve(prompt, context)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="an adapted model trained with memory "
                        "(a shipped name or a directory; default: the default text model)")
    parser.add_argument("--scored", type=int, default=60, help="held-out facts asked about "
                        "(3 prompts each)")
    parser.add_argument("--chunks", default="60:0,200:50", help="memory chunk size:overlap "
                        "pairs in characters (200:50 is the config's default)")
    parser.add_argument("--length", type=int, help="tokens generated (default: the answer "
                        "length the model's memory training used)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the engine, e.g. sampler.threshold=0.99")
    parser.add_argument("--samples-out", default="benchmarks/results/memory-read-samples.json")
    args = parser.parse_args()
    print(load_line())
    settings = memory_settings(args.model)
    facts = make_facts(settings["facts"], held_out=settings["held_out"],
                       seed=settings["fact_seed"])
    train_forms = list(settings["train_forms"])
    held_forms = [i for i in range(len(facts.train[0].sentences)) if i not in train_forms]
    scored = facts.held_out[: args.scored]
    embedder = build_embedder(settings["embedder"])
    base = Path(tempfile.mkdtemp(prefix="aios-memory-read-"))
    rows, samples = [], {}
    try:
        conditions = []
        for pair in args.chunks.split(","):
            size, overlap = (int(x) for x in pair.split(":"))
            conditions.append((f"held-out forms {held_forms}", size, overlap, held_forms))
        size, overlap = (int(x) for x in args.chunks.split(",")[0].split(":"))
        conditions.append((f"training forms {train_forms}", size, overlap, train_forms))
        none_ms = None
        for n, (label, size, overlap, forms) in enumerate(conditions):
            store = build_store(base / f"memory-{n}", [(facts.train, train_forms),
                                                        (facts.held_out, forms)],
                                embedder, size, overlap)
            overrides = [f"head.model={args.model}"] if args.model else []
            overrides.append(f"head.length={args.length or settings['answer_length']}")
            overrides += args.set
            overrides += [f"memory.path={store}", f"memory.embedder={settings['embedder']}",
                          "conditioners=[memory]"]
            with ArrowEngine.from_config(overrides=overrides) as engine:
                if none_ms is None:
                    rate, none_ms, samples["no memory"] = run(engine, scored, False)
                    rows.append(["none", "", f"{rate:.3f}", f"{none_ms:.0f}", "", ""])
                rate, ms, samples[f"{label}, {size}-char chunks"] = run(engine, scored, True)
                rows.append([label, f"{size}/{overlap}", f"{rate:.3f}", f"{ms:.0f}",
                             f"{ms - none_ms:.0f}", f"{retrieval_ms(engine, scored):.0f}"])
            shutil.rmtree(base / f"memory-{n}", ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nmodel {args.model or 'default'}; {len(facts.train) + len(facts.held_out)} facts in "
          f"memory ({len(facts.held_out)} held out from training); {len(scored)} held-out facts"
          f" x 3 prompts; training stored forms {train_forms}; retrieval: the memory "
          f"conditioner's defaults (top 5, min score 0.3, word weight 0.5); "
          f"threads {os.cpu_count()}")
    print(table(["memory holds held-out facts in", "chunk/overlap", "exact match",
                 "ms / generation", "added ms", "retrieval ms"], rows))
    out = Path(args.samples_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(samples, indent=1) + "\n")
    print(f"sample generations: {out}")


if __name__ == "__main__":
    main()
