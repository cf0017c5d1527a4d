"""ArrowStorage search and persistence, native vs NumPy/BLAS vs FAISS, side by side.

    python benchmarks/storage.py                    # 100k and 1M vectors of 384 dimensions
    python benchmarks/storage.py --sizes 100000     # one size

For each size: durable ingest rate (every batch fsynced in the log, segments written), the time
to open the store (memory-mapping its segments), single-query top-10 latency, the throughput of
16-query batches, and float16/int8 scans with exact float32 re-scoring (latency and recall@10
against exact search). Scores are inner products (what FAISS `IndexFlatIP` computes); vectors
are standard normal. FAISS is optional (`pip install -e .[bench]`); its column is skipped
without it. Every baseline runs in the same process on the same data.

Each scan is judged against the bus: the bandwidth floor is the time to stream the same bytes
with both cores reading (`aios_native`'s stream checksum, the fastest read this machine does),
measured in the same run; "x floor" is the scan's time over that. Timing follows
`benchmarks/measure.py`: load average first (warning above 0.5), candidates interleaved,
median [interquartile range].
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from aios.memory import open_memory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Timing, interleaved, load_line

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
    print(load_line())
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
    print(f"\n{load_line()}  (after)")


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

    opened = interleaved({b: (lambda b=b: open_memory(path, backend=b, read_only=True).close())
                          for b in ("native", "reference")}, 5)
    open_ms = {b: t.median * 1e3 for b, t in opened.items()}
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

    def per_query(searches: dict[str, Callable[[np.ndarray], object]]) -> dict[str, Timing]:
        """Single-query latency, the candidates interleaved over the same query sequence."""
        streams = {name: itertools.cycle(singles) for name in searches}
        return interleaved({name: (lambda name=name, f=f: f(next(streams[name])))
                            for name, f in searches.items()}, len(singles))

    def batch_rate(searches: dict[str, Callable[[np.ndarray], object]]) -> dict[str, float]:
        batch = queries[:BATCH]
        timings = interleaved({name: (lambda f=f: f(batch)) for name, f in searches.items()}, 7)
        return {name: BATCH / t.median for name, t in timings.items()}

    from aios_native import _native

    rows: list[tuple[str, ...]] = []
    # What the machine can stream right now, both cores reading: the floor of any exact scan.
    raw = data.reshape(-1).view(np.uint8)
    stream = interleaved({"two cores": lambda: _native.stream_checksum(raw),
                          "numpy sum (one core)": data.sum}, 5)
    floor_f32 = stream["two cores"].median
    bandwidth = data.nbytes / floor_f32 / 1e9
    floor_i8 = floor_f32 / 4  # the int8 copy: a quarter of the bytes
    one_core = data.nbytes / stream["numpy sum (one core)"].median / 1e9
    rows.append(("read bandwidth now, both cores (GB/s)", f"{bandwidth:.1f}",
                 f"one core (NumPy sum): {one_core:.1f}", "-", "-"))
    rows.append(("  floor for the f32 / i8 bytes (ms)",
                 f"{floor_f32 * 1e3:.1f} / {floor_i8 * 1e3:.1f}", "-", "-", "-"))
    rows.append(("ingest, durable (vectors/s)", f"{ingest:,.0f}", "(same code)", "-", "-"))
    rows.append(("open the store (ms)", f"{open_ms['native']:.1f}", f"{open_ms['reference']:.1f}",
                 "-", "-"))
    searches = {
        "native": lambda q: native.search(q, K, metric="dot"),
        "reference": lambda q: reference.search(q, K, metric="dot"),
        "numpy": lambda q: numpy_top_k(q[None, :] if q.ndim == 1 else q),
    }
    if index is not None:
        searches["faiss"] = lambda q: index.search(q[None, :] if q.ndim == 1 else q, K)
    latency = per_query(searches)
    rows.append(("1 query, f32 top-10 (ms) [IQR]",
                 *[latency[name].cell(digits=1) if name in latency else "-"
                   for name in ("native", "reference", "numpy", "faiss")]))
    rows.append(("  native over its floor", f"{latency['native'].median / floor_f32:.2f}x",
                 "-", "-", "-"))
    rate = batch_rate(searches)
    rows.append((f"{BATCH}-query batches (queries/s)", *_cells(rate, ",.0f")))
    batch_seconds = BATCH / rate["native"]
    rows.append(("  native batch over the floor (one read)", f"{batch_seconds / floor_f32:.2f}x",
                 "-", "-", "-"))

    exact = [native.search(q, K, metric="dot").ids for q in singles]
    for precision, floor in (("f16", floor_f32 / 2), ("i8", floor_i8)):
        started = time.perf_counter()
        native.search(singles[0], K, metric="dot", precision=precision)  # builds the copy
        build = time.perf_counter() - started
        found = [native.search(q, K, metric="dot", precision=precision).ids for q in singles]
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact, strict=True)])
        t = per_query({"native": lambda q, p=precision: native.search(q, K, metric="dot",
                                                                      precision=p)})["native"]
        rows.append((f"1 query, {precision} scan + f32 rescore (ms) [IQR]", t.cell(digits=1),
                     "-", "-", "-"))
        rows.append(("  over its copy's floor / recall@10 / copy built once (s)",
                     f"{t.median / floor:.2f}x / {recall:.3f} / {build:.1f}", "-", "-", "-"))
    native.close()
    reference.close()
    return rows


def _cells(values: dict[str, float], fmt: str) -> list[str]:
    return [format(values[name], fmt) if name in values else "-"
            for name in ("native", "reference", "numpy", "faiss")]


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
