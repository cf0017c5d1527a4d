"""What benchmarks/image.py and benchmarks/audio.py share: generating through the engine with
each continuous sampler and step count, scoring every cell, and timing one generation."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from aios.engine import ArrowEngine

#: The continuous samplers the tables compare (deterministic, multistep, ancestral).
SAMPLERS = ["ddim", "dpm-solver++", "euler-ancestral"]
STEPS = [10, 20, 50, 250]


def engine(head: str, sampler: str, model: str | None = None) -> ArrowEngine:
    overrides = [f"head.name={head}", f"sampler.name={sampler}"]
    if model:
        overrides.append(f"head.model={model}")
    return ArrowEngine.from_config(overrides=overrides)


def quality_rows(head: str, prompts: Sequence[str], score: Callable[[Any], dict[str, float]],
                 *, guidance: float, samplers: Sequence[str] = SAMPLERS,
                 steps: Sequence[int] = STEPS, model: str | None = None) -> list[list[Any]]:
    """One row per (sampler, steps): the scores of a batch generated for `prompts`."""
    rows = []
    cells = [(s, n) for s in samplers for n in steps]
    for sampler, count in tqdm(cells, desc="sampler x steps"):
        output = engine(head, sampler, model).diffuse(list(prompts), num_steps=count,
                                                      guidance_scale=guidance, seed=0)
        scores = score(output)
        rows.append([sampler, count, *(f"{v:.3f}" for v in scores.values())])
    return rows


def print_report(head: str, quality: str, rows: list[list[Any]], speed: str, prompt: str,
                 samplers: Sequence[str], guidance: float, model: str | None) -> None:
    """The quality table (`rows`, baselines first) and the speed table, with their titles."""
    from samplers import table  # benchmarks/ is on the path when a benchmark runs as a script

    print(f"\n{quality}")
    print(table(["sampler", "steps", "accuracy", "Fréchet (classifier features)"], rows))
    print(f"\n{speed}")
    print(table(["sampler", "steps", "ms, guidance 1 (one pass)", f"ms, guidance {guidance}"],
                speed_rows(head, samplers, prompt, guidance, model)))


def score_row(name: str, scores: dict[str, float]) -> list[Any]:
    return [name, "-", *(f"{v:.3f}" for v in scores.values())]


def speed_rows(head: str, samplers: Sequence[str], prompt: str, guidance: float,
               model: str | None = None) -> list[list[Any]]:
    """Milliseconds per generation at 20 steps, per sampler, without and with guidance."""
    rows = []
    for sampler in samplers:
        times = [milliseconds(head, sampler, prompt, 20, scale, model=model)
                 for scale in (1.0, guidance)]
        rows.append([sampler, 20, *(f"{ms:.0f}" for ms in times)])
    return rows


def milliseconds(head: str, sampler: str, prompt: str, steps: int, guidance: float,
                 repeats: int = 3, model: str | None = None) -> float:
    """Best of `repeats` for one generation through `diffuse` (the model already loaded)."""
    built = engine(head, sampler, model)
    built.diffuse(prompt, num_steps=steps, guidance_scale=guidance, seed=0)  # warm-up
    best = float("inf")
    for seed in range(repeats):
        start = time.perf_counter()
        built.diffuse(prompt, num_steps=steps, guidance_scale=guidance, seed=seed)
        best = min(best, time.perf_counter() - start)
    return 1000 * best
