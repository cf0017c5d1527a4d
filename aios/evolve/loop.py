"""The closed loop of self-evolution on a folder of new text, as one command.

    aios evolve --loop FOLDER --memory DIR [--requests N] [--name NAME]

storage -> memory conditioner -> model -> uncertainty -> router/adaptation -> storage:

1. **storage**: the folder's text files are ingested into the memory store DIR (chunked,
   embedded; an unchanged file is not added twice).
2. **memory conditioner -> model -> uncertainty**: N requests drawn from the folder (the opening
   of its passages) are generated memory-guided, with the router choosing adapters (`auto`),
   and each one's uncertainty is measured; every generation is written back to the memory with
   its prompt.
3. **adaptation**: the remembered texts the model is unsure of (uncertainty above
   `evolve.threshold`) are adapted to by climbing the ladder of `evolve.adapter`, cheapest
   kind first; an adapter is kept only under the balanced rule, and a kept one leaves router
   centroids.
4. **router -> storage**: the same requests run again; the report shows, before and after, how
   many were uncertain and how many the router gave the new adapter.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios.config import Config
from aios.errors import AiosError, NothingToAdaptError


@dataclass
class RequestOutcome:
    prompt: str
    adapters: dict[str, float]  # what the router chose
    uncertainty: float | None  # of the model that served it (adapted or base)


@dataclass
class LoopReport:
    """What one turn of the loop did (`table()` rows for the command to print)."""

    ingested: str
    name: str
    before: list[RequestOutcome]
    decisions: list[Any] = field(default_factory=list)  # one per rung of the ladder tried
    after: list[RequestOutcome] = field(default_factory=list)
    threshold: float = 1.5
    skipped: str = ""  # why nothing was adapted to, when nothing was

    @property
    def kept(self) -> bool:
        return bool(self.decisions) and bool(self.decisions[-1].kept)

    def uncertain(self, outcomes: list[RequestOutcome]) -> int:
        """Requests the model that served them was unsure of."""
        return sum(o.uncertainty is not None and o.uncertainty > self.threshold
                   for o in outcomes)

    def routed(self, outcomes: list[RequestOutcome]) -> int:
        return sum(self.name in o.adapters for o in outcomes)

    def table(self) -> list[tuple[str, str, str]]:
        def mean(outcomes: list[RequestOutcome]) -> str:
            values = [o.uncertainty for o in outcomes if o.uncertainty is not None]
            return f"{sum(values) / len(values):.3f}" if values else "n/a (no calibration)"

        rows = [("", "before", "after"),
                ("requests", str(len(self.before)), str(len(self.after)))]
        rows.append(("mean uncertainty of the serving model", mean(self.before),
                     mean(self.after) if self.after else "-"))
        rows.append((f"uncertain (> {self.threshold})", str(self.uncertain(self.before)),
                     str(self.uncertain(self.after)) if self.after else "-"))
        rows.append((f"routed to adapter {self.name!r}", str(self.routed(self.before)),
                     str(self.routed(self.after)) if self.after else "-"))
        return rows


def request_prompts(folder: str | Path, count: int, chars: int = 120) -> list[str]:
    """`count` requests from the folder's text: the openings of its paragraphs, cut at a word
    boundary, spread evenly over the files."""
    from aios.memory import read_text, text_files

    pieces = []
    for path in text_files([folder]):
        text = read_text(path)[0]
        for paragraph in (text or "").split("\n\n"):
            paragraph = " ".join(paragraph.split())
            if len(paragraph) >= 20:
                cut = paragraph[:chars]
                pieces.append(cut.rsplit(" ", 1)[0] if len(paragraph) > chars else cut)
    if not pieces:
        raise AiosError(f"{folder} holds no text to make requests from; give a folder of "
                        ".txt files")
    step = max(1, len(pieces) // count)
    return pieces[::step][:count]


def run_loop(config: Config, folder: str | Path, memory: str | Path, *, requests: int = 16,
             name: str = "loop", ladder: Sequence[Any] = (), store: Any = None,
             model: str | None = None, report: Callable[[Any], None] | None = None,
             progress: bool = True) -> LoopReport:
    """One turn of the loop (see the module docstring) with `config`'s head, sampler, memory
    settings and adapter ladder; `ladder` are the built adapter kinds, `store` the adapters'
    `AdapterStore`, `report` is called with each rung's decision."""
    from aios.engine import ArrowEngine
    from aios.evolve.ladder import climb, memory_texts
    from aios.memory import build_embedder, ingest_into

    summary, _ = ingest_into(memory, build_embedder(config.memory.embedder), [folder],
                             chunk_size=config.memory.chunk_size,
                             chunk_overlap=config.memory.chunk_overlap,
                             backend=config.memory.backend, progress=progress)
    prompts = request_prompts(folder, requests)
    adapters_dir = str(store.directory) if store is not None else None
    memory_config = dataclasses.replace(config.memory, path=str(memory))
    engine_config = dataclasses.replace(config, memory=memory_config)
    result = LoopReport(str(summary), name, [], threshold=config.evolve.threshold)

    def serve(remember: bool) -> list[RequestOutcome]:
        outcomes = []
        with ArrowEngine.from_config(engine_config) as engine:
            for prompt in _bar(prompts, "requests", progress):
                options: dict[str, Any] = {"adapters": "auto", "explain": True}
                if adapters_dir:
                    options["adapters_dir"] = adapters_dir
                engine.diffuse(prompt, memory_guided=True, remember=remember, **options)
                explain = getattr(engine.head, "last_explain", None) or {}
                served = explain.get("uncertainty_adapted", explain.get("uncertainty"))
                outcomes.append(RequestOutcome(prompt, dict(explain.get("chosen", {})), served))
        return outcomes

    result.before = serve(remember=True)
    texts = memory_texts(str(memory))
    model = model or config.head.options.get("model")
    try:
        result.decisions = climb(list(ladder), model, name, report=report, texts=texts,
                                 threshold=config.evolve.threshold, store=store,
                                 min_gain=config.evolve.min_gain,
                                 max_base_loss=config.evolve.max_base_loss,
                                 held_out=config.evolve.held_out, progress=progress)
    except NothingToAdaptError as exc:
        result.skipped = str(exc)  # the model knows this text well enough: nothing to do
    if result.kept:
        result.after = serve(remember=False)
    return result


def _bar(items: list[str], desc: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="req", file=sys.stderr, disable=not progress)
