"""Does generation use its memory? Held-out invented facts, answered with and without it.

    python benchmarks/memory_use.py          # the shipped `memory` model beside `default`
    python benchmarks/memory_use.py --model runs/text-memory/model-int8 --scored 100

The memory holds every fact (training and held-out), written as documents and added with the
real ingestion path; the questions and clozes of held-out facts (never trained on: they exist
only in the memory) go through `ArrowEngine.diffuse` with `memory_guided=True` (retrieval by the
`memory` conditioner, passages placed before the prompt) and with `memory_guided=False`.

Scores per model: exact match (the answer phrase in the continuation), and the perplexity bound
of held-out fact sentences with relevant, random and no passages in front
(`aios_text.memory_eval`). Costs, medians in milliseconds: one generation with and without
memory (the difference is the added latency), the retrieval alone (embedding the prompt,
searching the store, re-ranking by the prompt's words at each `--lexical-weights`), and the
layout of the passages into the context (tokenizing them: what conditioning costs with
`placement: context`, the step that a cross-attention head would spend projecting memory
vectors).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from aios_text.facts import make_facts
from aios_text.inference import model_path, text_settings
from aios_text.memory_eval import exact_match, fact_perplexity
from aios_text.memory_recipe import build_memory
from aios_text.model_dir import load_text_model
from aios_text.passages import context_ids
from samplers import table  # benchmarks/ is on the path when a benchmark runs as a script

from aios.engine import ArrowEngine
from aios.memory.conditioner import MemoryConditioner
from aios.memory.embedding import build_embedder
from aios.protocols import EngineContext
from aios.schedules import masking_schedule


def timed(function, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, (time.perf_counter() - start) * 1000


def exact_match_run(engine: ArrowEngine, facts, memory: bool,
                    args: argparse.Namespace) -> tuple[float, float, list]:
    """(exact match, median ms per generation, a few generations) through `engine`."""
    times: list[float] = []

    def generate(prompt: str) -> str:
        text, ms = timed(engine.diffuse, prompt, num_steps=args.steps, seed=0,
                         memory_guided=memory)
        times.append(ms)
        return text

    result = exact_match(generate, facts)
    return result.rate, statistics.median(times), result.generations[:6]


def conditioning_costs(engine: ArrowEngine, facts, lexical_weight: float,
                       args: argparse.Namespace) -> tuple[float, float]:
    """Median ms of retrieval (embed + search + re-rank) and of laying the passages into the
    context."""
    conditioner = MemoryConditioner(min_score=args.min_score, lexical_weight=lexical_weight)
    context = EngineContext(head=engine.head, storage=engine.storage, embedder=engine.embedder)
    prompts = [p for f in facts[:20] for p, _ in f.prompts]
    retrieval = statistics.median(timed(conditioner.retrieve, p, context)[1] for p in prompts)
    found = [conditioner.retrieve(p, context) for p in prompts]
    budget = engine.head.model.backbone.config.max_len - args.length
    layout = statistics.median(timed(context_ids, engine.head.tokenizer, f, budget)[1]
                               for f in found)
    return retrieval, layout


def score(name: str, model_dir: Path, stores: dict[int, Path], facts,
          args: argparse.Namespace) -> tuple[list[list[str]], list[str], dict]:
    """Rows of the exact-match table, the row of the perplexity table, sample generations."""
    scored = facts.held_out[: args.scored]
    rows, samples = [], {}
    none_ms = 0.0
    for n, (size, store) in enumerate(stores.items()):
        for m, weight in enumerate(args.lexical_weights):
            overrides = [f"head.model={model_dir}", f"head.length={args.length}",
                         f"sampler.name={args.sampler}", f"sampler.temperature={args.temperature}",
                         f"memory.path={store}", f"memory.embedder={args.embedder}",
                         f"conditioners=[{{name: memory, min_score: {args.min_score}, "
                         f"lexical_weight: {weight}}}]"]
            with ArrowEngine.from_config(overrides=overrides) as engine:
                if n == m == 0:
                    rate, none_ms, samples["no memory"] = exact_match_run(engine, scored, False,
                                                                          args)
                    rows.append([name, "none", "", f"{rate:.3f}", f"{none_ms:.0f}", "", "", ""])
                label = f"{size}-char chunks"
                rate, ms, samples[f"memory, {label}, word weight {weight}"] = exact_match_run(
                    engine, scored, True, args)
                retrieval, layout = conditioning_costs(engine, scored, weight, args)
                rows.append([name, label, f"{weight:g}", f"{rate:.3f}", f"{ms:.0f}",
                             f"{ms - none_ms:.0f}", f"{retrieval:.0f}", f"{layout:.2f}"])
    model, tokenizer, settings = load_text_model(model_dir)
    alpha = masking_schedule(settings.get("schedule", "linear")).alpha
    ppl = fact_perplexity(model, tokenizer, alpha, scored, facts.train)
    return rows, [name, f"{ppl['none']:.1f}", f"{ppl['random']:.1f}",
                  f"{ppl['relevant']:.1f}"], samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="memory", help="the memory-trained model (a "
                        "directory or a shipped model's name)")
    parser.add_argument("--base-model", default="default", help="the model it was trained "
                        "from, for comparison ('' to skip)")
    parser.add_argument("--facts", type=int, help="facts made (default: the model's recipe)")
    parser.add_argument("--scored", type=int, default=50, help="held-out facts asked about")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[60, 200],
                        help="characters per passage: 60 holds one fact; 200 is the config's")
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--min-score", type=float, default=0.3)
    parser.add_argument("--lexical-weights", type=float, nargs="+", default=[0.0, 0.5],
                        help="the conditioner's word re-ranking weights to compare (0: the "
                        "embedding alone; 0.5 is the default)")
    parser.add_argument("--sampler", default="low-confidence")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--length", type=int, help="tokens generated (default: the answer "
                        "length the memory model was trained for, else 16)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: one per token)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples-out", default="benchmarks/results/memory-use-samples.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    trained = text_settings(model_path(args.model)).get("memory_training", {})
    args.length = args.length or trained.get("answer_length", 16)
    args.steps = args.steps or args.length
    facts = make_facts(args.facts or trained.get("facts", 2000),
                       held_out=trained.get("held_out", 0.25), seed=trained.get("fact_seed", 0))
    base = Path(tempfile.mkdtemp(prefix="aios-memory-use-"))
    try:
        embedder = build_embedder(args.embedder)
        stores = {}
        for size in args.chunk_sizes:
            build_memory(list(facts.train + facts.held_out), base / f"memory-{size}", embedder,
                         size).close()
            stores[size] = base / f"memory-{size}" / "store"
        models = [("memory-trained", args.model)]
        if args.base_model:
            models.insert(0, ("base", args.base_model))
        results = [score(name, model_path(path), stores, facts, args) for name, path in models]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{len(facts.train) + len(facts.held_out)} facts in memory, {args.scored} held-out "
          f"facts x 3 prompts; {args.sampler} (temperature {args.temperature}), {args.steps} "
          f"steps, {args.length} tokens, top 5 "
          f"passages with score >= {args.min_score}; torch threads {args.threads}")
    print(table(["model", "memory", "word weight", "exact match", "ms / generation", "added ms",
                 "retrieval ms", "layout ms"], [row for rows, _, _ in results for row in rows]))
    print("\nperplexity bound of held-out fact sentences (a paraphrase of the stored one) with:")
    print(table(["model", "no passages", "random passages", "relevant passage + random"],
                [ppl for _, ppl, _ in results]))
    out = Path(args.samples_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({row[0][0]: samples for row, _, samples in results},
                              indent=1) + "\n")
    print(f"sample generations: {out}")


if __name__ == "__main__":
    main()
