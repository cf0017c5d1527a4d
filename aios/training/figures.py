"""Labelled grids of pictures (images, spectrograms) as PNG files, written atomically: what
`aios generate --grid` and the training recipes' sample sheets show."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aios.io import write_atomic


def write_grid_png(path: str | Path, pictures: np.ndarray, rows: Sequence[str] | None, *,
                   cell: tuple[float, float] = (0.8, 0.8), **imshow: Any) -> Path:
    """(count, height, width) pictures in len(rows) equal rows (one row without names), the
    name of each row at its left; `imshow` options (cmap, vmin, vmax, origin...) go to
    matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pictures = np.asarray(pictures)
    names = list(rows) if rows else [""]
    if pictures.ndim != 3 or len(pictures) % len(names):
        raise ValueError(f"{pictures.shape} pictures do not fill {len(names)} rows evenly")
    columns = len(pictures) // len(names)
    labelled = any(names)
    fig, axes = plt.subplots(len(names), columns, squeeze=False, dpi=100,
                             figsize=(columns * cell[0] + (1.2 if labelled else 0.1),
                                      len(names) * cell[1] + 0.1))
    for r, name in enumerate(names):
        for c in range(columns):
            ax = axes[r][c]
            ax.imshow(pictures[r * columns + c], aspect="auto", **imshow)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    left = 1.2 / (columns * cell[0] + 1.2) if labelled else 0.01
    fig.subplots_adjust(left=left, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    path = Path(path)
    write_atomic(path, lambda f: f.write(buffer.getvalue()))
    return path
