"""What every embedder shares: batching with a progress bar, L2 normalisation, and `auto`.

Embedders are plugins (`aios_register_embedders`); this module is the core's side of them, so
each plugin only supplies the function that embeds one batch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from aios.errors import AiosError, PluginNotFoundError
from aios.protocols import Embedder

#: Inputs above this many texts show a progress bar (when asked for one).
PROGRESS_MIN = 256


def normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, np.float32(1e-12))


def embed_in_batches(texts: Sequence[str], embed_batch: Callable[[list[str]], np.ndarray],
                     *, dim: int, batch_size: int, progress: bool = False,
                     name: str = "embedding") -> np.ndarray:
    """Embed `texts` `batch_size` at a time with `embed_batch` and return normalised rows.

    Why batches: a transformer's memory grows with batch x length, so a whole corpus at once
    would not fit; texts are sorted by length first so each batch pads little.
    """
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts[{bad}] is a {type(texts[bad]).__name__}; embed strings only")
    out = np.zeros((len(texts), dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with tqdm(total=len(texts), desc=name, unit="text", file=sys.stderr,
              disable=not progress or len(texts) < PROGRESS_MIN) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            vectors = np.asarray(embed_batch([texts[i] for i in rows]), dtype=np.float32)
            if vectors.shape != (len(rows), dim):
                raise AiosError(f"{name} returned vectors of shape {vectors.shape} for "
                                f"{len(rows)} texts; expected ({len(rows)}, {dim})")
            out[rows] = normalise(vectors)
            bar.update(len(rows))
    return out


def build_embedder(name: str = "auto", registry: object | None = None) -> Embedder:
    """The embedder registered as `name` (``auto``: the highest priority), built."""
    from aios.registry import INSTALL_HINTS, Registry, default_registry

    registry = registry if isinstance(registry, Registry) else default_registry()
    if name == "auto":
        best = registry.best("embedder")
        if best is None:
            raise PluginNotFoundError("embedder", "auto", (), INSTALL_HINTS["embedder"])
        name = best.name
    registration = registry.get("embedder", name)
    embedder = registration.factory()
    if not isinstance(embedder, Embedder):
        raise AiosError(f"embedder {name!r} from plugin {registration.plugin!r} lacks `name`, "
                        "`dim` or `embed`; see aios_register_embedders")
    return embedder
