"""What `aios generate` and `aios plugins --verbose` do for heads whose output is not text.

The core knows no pixel or sample: a head that generates images or audio offers
``write(output, path, rows=None) -> list[Path]`` (the files it wrote), ``output_suffix`` (the
default file type), ``grid_rows(prompt)`` (the classes a labelled grid shows) and
``parameter_counts()`` (``{"backbone": n, "head": m}``); this module only calls them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aios.errors import AiosError, UsageError
from aios.registry import Registry

#: Samples per class in a `--grid`.
GRID_COLUMNS = 8


def grid_rows(head: Any, prompt: str) -> list[str]:
    if not hasattr(head, "grid_rows"):
        raise UsageError(f"--grid does not apply to {head.modality} generation: the "
                         f"{head.modality} head draws no grids; drop --grid")
    return head.grid_rows(prompt)


def write_output(head: Any, output: Any, out: str | None, rows: list[str] | None) -> list[Path]:
    """Write a non-text generation with the head's own writer; returns the files written."""
    if not hasattr(head, "write"):
        raise AiosError(f"the {head.modality} head returned {type(output).__name__} but cannot "
                        "write it to a file")
    path = Path(out) if out else Path(f"aios-{head.modality}{getattr(head, 'output_suffix', '')}")
    return head.write(output, path, rows=rows)


def head_parameter_rows(registry: Registry) -> list[tuple[str, ...]]:
    """One row per head: its parameters beside the shared backbone's (built with defaults)."""
    rows = [("HEAD", "MODALITY", "HEAD PARAMETERS", "BACKBONE PARAMETERS", "BACKBONE SHARE")]
    for name in registry.names("head"):
        registration = registry.get("head", name)
        try:
            head = registration.factory()
            counts = head.parameter_counts() if hasattr(head, "parameter_counts") else None
        except Exception as exc:  # noqa: BLE001 - a head that cannot build says why; others show
            rows.append((name, "?", f"cannot build: {type(exc).__name__}: {exc}", "", ""))
            continue
        if counts is None:
            rows.append((name, head.modality, "(not reported)", "", ""))
            continue
        share = counts["backbone"] / (counts["backbone"] + counts["head"])
        rows.append((name, head.modality, f"{counts['head']:,}", f"{counts['backbone']:,}",
                     f"{share:.1%}"))
    return rows
