"""Exact top-k search: the kernel interface, the NumPy reference kernel and the shared logic.

A *kernel* does one thing: score rows of a matrix against queries and keep the best `k` per
query, among rows a mask allows. Backends differ only in their kernel (NumPy/BLAS here, Rust in
`aios_native`); everything around it — metrics, quantized copies, exact re-scoring, merging
segments — is this module's, so every backend returns the same answers.

Kernel scores are "higher is closer": ``dot`` is ``(x·q)·scale + bias`` (scale and bias are
per-row and optional), ``cos`` is cosine similarity, ``l2`` is minus the squared distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

from aios.memory.errors import InvalidRecordError

METRICS = ("cosine", "dot", "l2")
PRECISIONS = ("f32", "f16", "i8")
#: How many candidates per result a quantized scan keeps for exact re-scoring.
RESCORE_FACTOR = 8
_MIN_CANDIDATES = 64


class Kernel(Protocol):
    """Fused scoring and top-k selection over one segment's vectors."""

    name: str

    def top_k(
        self,
        matrix: np.ndarray,
        queries: np.ndarray,
        k: int,
        metric: str,
        *,
        mask: np.ndarray | None = None,
        scale: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        threshold: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the best `k` rows per query, best first.

        `matrix` is (n, dim) float32, float16 or int8 and `queries` (q, dim) of the same dtype;
        `metric` is "dot", "cos" or "l2"; `mask` (bool, n) allows rows; rows scoring below
        `threshold` are skipped. Returns int64 rows and float32 scores, both (q, k), padded
        with row -1 and score -inf where fewer rows qualify.
        """

    def quantize_i8(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row symmetric int8 codes and float32 scales: ``row ≈ codes * scale``."""


class ReferenceKernel:
    """NumPy/BLAS: a matrix product per block of rows, then `argpartition`."""

    name = "reference"
    block_rows = 65536

    def top_k(self, matrix, queries, k, metric, *, mask=None, scale=None, bias=None,
              threshold=None):
        nq = len(queries)
        best_rows = np.full((nq, 0), -1, np.int64)
        best_scores = np.full((nq, 0), -np.inf, np.float32)
        q = queries.astype(np.float32)
        q_norms = np.linalg.norm(q, axis=1)
        for start in range(0, len(matrix), self.block_rows):
            block = matrix[start:start + self.block_rows].astype(np.float32, copy=False)
            scores = block @ q.T  # (rows, q)
            if metric == "dot":
                if scale is not None:
                    scores *= scale[start:start + len(block), None]
                if bias is not None:
                    scores += bias[start:start + len(block), None]
            elif metric == "cos":
                norms = np.linalg.norm(block, axis=1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    scores /= norms[:, None] * q_norms[None, :]
                scores[~np.isfinite(scores)] = 0.0
            else:
                sq = np.einsum("ij,ij->i", block, block)
                scores = 2 * scores - sq[:, None] - (q_norms ** 2)[None, :]
            if mask is not None:
                scores[~mask[start:start + len(block)]] = -np.inf
            if threshold is not None:
                scores[scores < threshold] = -np.inf
            rows = np.arange(start, start + len(block))
            best_rows, best_scores = _merge(best_rows, best_scores, rows, scores.T, k)
        return best_rows, best_scores

    def quantize_i8(self, matrix):
        return quantize_i8(matrix)


def _merge(rows_a, scores_a, rows_b, scores_b, k):
    """Keep the best `k` of the current best and a new block (scores (q, n))."""
    scores = np.concatenate([scores_a, scores_b], axis=1)
    rows = np.concatenate([rows_a, np.broadcast_to(rows_b, scores_b.shape)], axis=1)
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores = np.take_along_axis(scores, part, axis=1)
        rows = np.take_along_axis(rows, part, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    rows = np.take_along_axis(rows, order, axis=1)
    rows = np.where(np.isfinite(scores), rows, -1)
    return rows, scores


@dataclass(frozen=True)
class SearchResult:
    """The records nearest one query, best first.

    `scores` are cosine similarities, dot products, or squared L2 distances (for ``l2``, lower is
    closer), and `records` holds the full records in the same order as `ids`.
    """

    ids: list[str]
    scores: np.ndarray
    records: pa.Table

    def __len__(self) -> int:
        return len(self.ids)


def check_query(query: object, dim: int, metric: str, k: object, precision: str) -> np.ndarray:
    """Queries as a (q, dim) float32 array, after checking every argument of a search."""
    from aios.memory.schema import vectors

    if metric not in METRICS:
        raise InvalidRecordError(f"metric {metric!r} is unknown; use one of {', '.join(METRICS)}")
    if precision not in PRECISIONS:
        raise InvalidRecordError(f"precision {precision!r} is unknown; use one of "
                                 f"{', '.join(PRECISIONS)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InvalidRecordError(f"k must be a positive integer, got {k!r}")
    queries = vectors(query, dim, what="query")
    if metric == "cosine" and not np.linalg.norm(queries, axis=1).all():
        raise InvalidRecordError("a query is the zero vector, which has no cosine similarity; "
                                 "use metric='dot' or 'l2', or a non-zero query")
    return queries


def exact_scores(rows: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Exact float32 scores ("higher is closer") of a few rows: used to re-score candidates."""
    dots = rows.astype(np.float32) @ query
    if metric == "dot":
        return dots
    if metric == "cosine":
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = dots / (np.linalg.norm(rows, axis=1) * np.linalg.norm(query))
        return np.where(np.isfinite(scores), scores, 0.0).astype(np.float32)
    return -((rows - query) ** 2).sum(axis=1, dtype=np.float32)


def quantize_i8(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 codes and scales: ``row ≈ codes * scale``."""
    peak = np.abs(matrix).max(axis=1) if len(matrix) else np.zeros(0, np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.rint(matrix / scale[:, None]).clip(-127, 127).astype(np.int8)
    return codes, scale
