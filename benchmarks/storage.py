"""ArrowStorage search and persistence, native vs NumPy/BLAS vs FAISS, side by side.

    python benchmarks/storage.py                    # 100k and 1M vectors of 384 dimensions
    python benchmarks/storage.py --sizes 100000     # one size

For each size: durable ingest rate (every batch fsynced in the log, segments written), the time
to open the store (memory-mapping its segments), single-query top-10 latency, the throughput of
16-query batches, and float16/int8 scans with exact float32 re-scoring (latency and recall@10
against exact search). Scores are inner products (what FAISS `IndexFlatIP` computes); vectors
are standard normal. FAISS is optional (`pip install -e .[bench]`); its column is skipped
without it. Every baseline runs in the same process on the same data.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from aios.memory import open_memory

K = 10
BATCH = 16
INGEST_BATCH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=30, help="queries timed per measurement")
    parser.add_argument("--dir", help="where to build the stores (default: a temporary folder)")
    args = parser.parse_args()
    try:
        import faiss
    except ImportError:
        faiss = None
    for n in args.sizes:
        base = Path(args.dir or tempfile.mkdtemp(prefix="aios-bench-"))
        try:
            rows = run_size(n, args.dim, args.queries, base / f"store-{n}", faiss)
        finally:
            shutil.rmtree(base / f"store-{n}", ignore_errors=True)
        print(f"\n{n:,} x {args.dim} float32, k={K}, inner product")
        print_table(rows, faiss is not None)


def run_size(n: int, dim: int, n_queries: int, path: Path, faiss) -> list[tuple[str, ...]]:
    rng = np.random.default_rng(0)
    data = np.empty((n, dim), np.float32)
    for start in tqdm(range(0, n, 100_000), desc=f"generating {n:,}", unit="block"):
        data[start:start + 100_000] = rng.standard_normal((min(100_000, n - start), dim),
                                                          np.float32)
    queries = rng.standard_normal((max(n_queries, BATCH), dim), np.float32)

    started = time.perf_counter()
    with open_memory(path, dim, backend="native") as store:
        for start in tqdm(range(0, n, INGEST_BATCH), desc="ingesting (fsync per batch)",
                          unit="batch"):
            store.add(embeddings=data[start:start + INGEST_BATCH],
                      ids=[str(i) for i in range(start, min(start + INGEST_BATCH, n))])
    ingest = n / (time.perf_counter() - started)

    open_ms = {b: median_ms(lambda b=b: open_memory(path, backend=b, read_only=True).close(),
                            5) for b in ("native", "reference")}
    native = open_memory(path, backend="native", read_only=True)
    reference = open_memory(path, backend="reference", read_only=True)
    singles = queries[:n_queries]

    def numpy_top_k(q: np.ndarray) -> np.ndarray:
        scores = data @ q.T
        return np.argpartition(-scores, K - 1, axis=0)[:K]

    index = None
    if faiss is not None:
        index = faiss.IndexFlatIP(dim)
        index.add(data)

    def per_query(search: Callable[[np.ndarray], object]) -> float:
        search(singles[0])
        return statistics.median(timed(lambda q=q: search(q)) for q in singles) * 1e3

    def batch_rate(search: Callable[[np.ndarray], object]) -> float:
        batch = queries[:BATCH]
        search(batch)
        return BATCH / statistics.median(timed(lambda: search(batch)) for _ in range(5))

    rows: list[tuple[str, ...]] = []
    # What the machine can stream right now: the floor any exact scan is measured against.
    seconds = statistics.median(timed(data.sum) for _ in range(3))
    bandwidth = data.nbytes / seconds / 1e9
    rows.append(("read bandwidth now, NumPy sum (GB/s)", f"{bandwidth:.1f}", "-", "-", "-"))
    rows.append(("  scan floor at that rate, f32 / i8 (ms)",
                 f"{seconds * 1e3:.0f} / {seconds * 1e3 / 4:.0f}", "-", "-", "-"))
    rows.append(("ingest, durable (vectors/s)", f"{ingest:,.0f}", "(same code)", "-", "-"))
    rows.append(("open the store (ms)", f"{open_ms['native']:.1f}", f"{open_ms['reference']:.1f}",
                 "-", "-"))
    latency = {
        "native": per_query(lambda q: native.search(q, K, metric="dot")),
        "reference": per_query(lambda q: reference.search(q, K, metric="dot")),
        "numpy": per_query(lambda q: numpy_top_k(q[None, :])),
    }
    if index is not None:
        latency["faiss"] = per_query(lambda q: index.search(q[None, :], K))
    rows.append(("1 query, f32 top-10 (ms)", *_cells(latency, ".1f")))
    rate = {
        "native": batch_rate(lambda b: native.search(b, K, metric="dot")),
        "reference": batch_rate(lambda b: reference.search(b, K, metric="dot")),
        "numpy": batch_rate(lambda b: numpy_top_k(b)),
    }
    if index is not None:
        rate["faiss"] = batch_rate(lambda b: index.search(b, K))
    rows.append((f"{BATCH}-query batches (queries/s)", *_cells(rate, ",.0f")))

    exact = [native.search(q, K, metric="dot").ids for q in singles]
    for precision in ("f16", "i8"):
        started = time.perf_counter()
        native.search(singles[0], K, metric="dot", precision=precision)  # builds the copy
        build = time.perf_counter() - started
        found = [native.search(q, K, metric="dot", precision=precision).ids for q in singles]
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact, strict=True)])
        ms = per_query(lambda q, p=precision: native.search(q, K, metric="dot", precision=p))
        rows.append((f"1 query, {precision} scan + f32 rescore (ms)", f"{ms:.1f}", "-", "-", "-"))
        rows.append(("  recall@10 vs exact / copy built once (s)", f"{recall:.3f} / {build:.1f}",
                     "-", "-", "-"))
    native.close()
    reference.close()
    return rows


def _cells(values: dict[str, float], fmt: str) -> list[str]:
    return [format(values[name], fmt) if name in values else "-"
            for name in ("native", "reference", "numpy", "faiss")]


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()
    return statistics.median(timed(call) for _ in range(repeat)) * 1e3


def print_table(rows: list[tuple[str, ...]], with_faiss: bool) -> None:
    header = ("measurement", "native (Rust)", "reference (store)", "NumPy BLAS + argpartition",
              "FAISS IndexFlatIP" if with_faiss else "FAISS (not installed)")
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
