"""Plain-text tables, the one format every `aios` command prints its rows in."""

from __future__ import annotations

__all__ = ["table"]


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns two spaces apart (no trailing blanks)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )

