"""The adapter ladder: try adapter kinds cheapest first, keep the first one that helps.

Domain code (the closed loop, `aios evolve`) climbs the ladder; it lives here, not in the CLI,
so that the loop does not import the command that runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aios.errors import ConfigError
from aios.memory import MANIFEST

__all__ = ["climb", "memory_texts"]


def climb(ladder: list[Any], model: str | None, name: str, *, report: Any = None,
          **evolve_args: Any) -> list[Any]:
    """Train the kinds of the ladder in order, stopping at the first adapter kept; returns
    every decision (the last one is the kept adapter's, if any). `report(decision)` is called
    after each rung, e.g. to print its table."""
    decisions = []
    for kind in ladder:
        decision = kind.evolve(model, name, **evolve_args)
        decisions.append(decision)
        if report is not None:
            report(decision)
        if decision.kept:
            break
    return decisions


def memory_texts(path: str | None) -> list[str]:
    """The text records of the memory store at `path`, the material `--from-memory` adapts to."""
    from aios.memory import open_memory

    if path is None or not (Path(path) / MANIFEST).is_file():
        raise ConfigError("--memory", "memory.path", f"no memory store at {path}",
                          "name it: aios evolve --from-memory --memory DIR")
    with open_memory(path, read_only=True) as store:
        table = store.to_table()
    modalities = table.column("modality").to_pylist()
    return [c for c, m in zip(table.column("content").to_pylist(), modalities, strict=True)
            if m == "text" and c.strip()]
