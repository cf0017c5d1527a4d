"""ArrowStorage search against the bus: native scans, NumPy/BLAS, the reference store and FAISS,
each timed in its own process.

    python benchmarks/storage.py                        # 100k and 1M vectors of 384 dimensions
    python benchmarks/storage.py --sizes 1000000 --repeats 7
    python benchmarks/storage.py --quick                # 20k vectors, 3 rounds: under a minute

For each size the data set (standard normal float32 vectors, inner product, k = 10) is written
once to a memory-mapped ``.npy`` file in a temporary folder, with the queries and the exact
top-10 of every query, and one durable store is built from it (every batch fsynced, int8 and
float16 copies persisted beside each segment, so no process rebuilds them). Then every candidate
runs in a fresh child process per round, the rounds interleaved across candidates (A B C, B C A,
...): a NumPy/OpenBLAS matrix product leaves worker threads spinning after it returns, and in one
process they stole the two cores from the native scan that ran next (the native float32 query
measured 105 ms interleaved in-process, 56 ms alone). Each child maps the files, makes one
untimed warm-up call (page faults, copy checks), then times `--calls` calls.

Each scan is judged against the bus: the floor is the time to stream the same bytes with both
cores reading (`aios_native`'s `stream_checksum`, the fastest read this machine does), measured
in the same run and in its own child process like every candidate; "x floor" is the scan's
median over the floor's for the bytes it reads (a 16-query batch reads the float32 rows once).
Recall@10 is against the exact top-10, for every candidate (exact ones must show 1.000). Timing
follows `benchmarks/measure.py`: the load average first and after (warning above 0.5), median
and interquartile range. FAISS is optional (`pip install -e .[bench]`); it is skipped without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Timing, load_line, markdown_table

K = 10
BATCH = 16
INGEST_BATCH = 10_000
#: Queries written with the data set; a round's calls walk through them from a rotating start.
QUERY_POOL = 64
#: The bytes each scan reads, per vector of `dim` float32 values.
BYTES_PER_ROW = {"f32": lambda dim: 4 * dim, "f16": lambda dim: 2 * dim,
                 "i8": lambda dim: dim + 4}  # int8 codes and a float32 scale


#: What a candidate's set-up returns: its search (queries in, rows of the top k out) and the
#: seconds opening its store took (None where there is no store).
Search = Callable[[np.ndarray], np.ndarray]
Setup = Callable[[Path, np.ndarray], tuple[Search, float | None]]


@dataclass(frozen=True)
class Candidate:
    """One timed search: what it is called in the table, the copy it reads, its batch size."""

    label: str
    reads: str  # "f32", "f16" or "i8": whose floor it is judged by
    batch: int = 1
    needs: str | None = None  # a module that must import, else the candidate is skipped


CANDIDATES = {
    "native": Candidate("native f32, 1 query", "f32"),
    "native-batch": Candidate(f"native f32, {BATCH}-query batch", "f32", BATCH),
    "native-i8": Candidate("native int8 scan + f32 re-score, 1 query", "i8"),
    "native-f16": Candidate("native f16 scan + f32 re-score, 1 query", "f16"),
    "numpy": Candidate("NumPy/BLAS + argpartition, 1 query", "f32"),
    "numpy-batch": Candidate(f"NumPy/BLAS + argpartition, {BATCH}-query batch", "f32", BATCH),
    "reference": Candidate("reference store (NumPy kernel), 1 query", "f32"),
    "faiss": Candidate("FAISS IndexFlatIP, 1 query", "f32", needs="faiss"),
    "faiss-batch": Candidate(f"FAISS IndexFlatIP, {BATCH}-query batch", "f32", BATCH,
                             needs="faiss"),
}
FLOOR = "floor"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5,
                        help="rounds; each starts one child process per candidate")
    parser.add_argument("--calls", type=int, default=10,
                        help="timed calls per child (batch candidates make a third as many)")
    parser.add_argument("--quick", action="store_true",
                        help="20,000 vectors, 3 rounds of 5 calls (docs check, under a minute)")
    parser.add_argument("--only", nargs="+", choices=sorted(CANDIDATES),
                        help="time only these candidates (the floor always runs)")
    parser.add_argument("--dir", help="where to write the data sets (default: a temporary folder)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker, Path(args.workdir), args.calls, args.round)))
        return
    if args.quick:
        args.sizes, args.repeats, args.calls = [20_000], 3, 5
    for name, value in (("--repeats", args.repeats), ("--calls", args.calls),
                        ("--dim", args.dim), *(("--sizes", n) for n in args.sizes)):
        if value < 1:
            parser.error(f"{name} must be positive, got {value}")
    print(load_line())
    names = [name for name in (args.only or CANDIDATES) if _available(CANDIDATES[name])]
    skipped = [name for name in CANDIDATES if name not in names and not args.only]
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="aios-bench-"))
    try:
        for n in args.sizes:
            workdir = base / f"storage-{n}x{args.dim}"
            ingest = build_data_set(workdir, n, args.dim)
            try:
                results = run_rounds(workdir, [FLOOR, *names], args.repeats, args.calls)
            except RuntimeError as exc:
                sys.exit(f"error: {exc}")
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            print(f"\n{n:,} x {args.dim} float32, k={K}, inner product; {args.repeats} rounds, "
                  f"each candidate in its own process")
            print(report(results, n, args.dim, ingest))
            if skipped:
                print(f"(not installed, skipped: {', '.join(skipped)})")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\n{load_line()}  (after)")


def _available(candidate: Candidate) -> bool:
    if candidate.needs is None:
        return True
    try:
        __import__(candidate.needs)
    except ImportError:
        return False
    return True


# -- the parent: the data set once, then the interleaved rounds of child processes ------------

def build_data_set(workdir: Path, n: int, dim: int) -> float:
    """Write data.npy, queries.npy, exact.npy and the store; return the ingest rate (vectors/s)."""
    from aios.memory import open_memory

    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = np.lib.format.open_memmap(workdir / "data.npy", "w+", np.float32, (n, dim))
    for start in tqdm(range(0, n, 100_000), desc=f"generating {n:,}", unit="block"):
        data[start:start + 100_000] = rng.standard_normal((min(100_000, n - start), dim),
                                                          np.float32)
    queries = rng.standard_normal((QUERY_POOL, dim), np.float32)
    np.save(workdir / "queries.npy", queries)
    np.save(workdir / "exact.npy", exact_top_k(data, queries))
    started = time.perf_counter()
    with open_memory(workdir / "store", dim, backend="native", copies="i8,f16") as store:
        for start in tqdm(range(0, n, INGEST_BATCH), desc="ingesting (fsync per batch)",
                          unit="batch"):
            store.add(embeddings=data[start:start + INGEST_BATCH],
                      ids=[str(i) for i in range(start, min(start + INGEST_BATCH, n))])
    ingest = n / (time.perf_counter() - started)
    data.flush()
    del data
    return ingest


def exact_top_k(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Rows of the exact top-k of every query (float64 scores: no float32 ties decide it)."""
    best_rows = np.zeros((len(queries), 0), np.int64)
    best_scores = np.zeros((len(queries), 0))
    q = queries.astype(np.float64)
    for start in range(0, len(data), 65_536):
        scores = (np.asarray(data[start:start + 65_536], np.float64) @ q.T).T
        rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        scores = np.concatenate([best_scores, scores], axis=1)
        rows = np.concatenate([best_rows, rows], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_rows = np.take_along_axis(rows, keep, axis=1)
    return best_rows


def run_rounds(workdir: Path, names: list[str], repeats: int, calls: int) -> dict[str, dict]:
    """Every candidate once per round in a fresh process, the order rotating between rounds."""
    results: dict[str, dict] = {name: {} for name in names}
    with tqdm(total=repeats * len(names), desc="rounds x candidates", unit="process") as bar:
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                merge_result(results[name], run_child(name, workdir, calls, r))
                bar.update()
    return results


def run_child(name: str, workdir: Path, calls: int, round_index: int) -> dict:
    env = dict(os.environ)
    done = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--workdir", str(workdir),
         "--calls", str(calls), "--round", str(round_index)],
        env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {name!r} child process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def merge_result(into: dict, result: dict) -> None:
    """Pool one child's samples (lists are concatenated, per key) into the candidate's."""
    for key, value in result.items():
        if isinstance(value, dict):
            merge_result(into.setdefault(key, {}), value)
        else:
            into.setdefault(key, []).extend(value if isinstance(value, list) else [value])


def report(results: dict[str, dict], n: int, dim: int, ingest: float) -> str:
    floors = {reads: Timing(tuple(samples)) for reads, samples in results[FLOOR]["seconds"].items()}
    f32_bytes = n * BYTES_PER_ROW["f32"](dim)
    bandwidth = f32_bytes / floors["f32"].median / 1e9
    rows = [("candidate", "per call, median [IQR]", "queries/s", "x floor", "recall@10")]
    for reads, timing in floors.items():
        megabytes = n * BYTES_PER_ROW[reads](dim) / 1e6
        rows.append((f"read floor, both cores: the {reads} bytes ({megabytes:,.0f} MB)",
                     timing.cell(digits=1), "-", "1.00x", "-"))
    for name, result in results.items():
        if name == FLOOR:
            continue
        candidate = CANDIDATES[name]
        timing = Timing(tuple(result["seconds"]))
        recall = float(np.mean(result["recall"]))
        rows.append((candidate.label, timing.cell(digits=1),
                     f"{candidate.batch / timing.median:,.0f}",
                     f"{timing.median / floors[candidate.reads].median:.2f}x", f"{recall:.3f}"))
    opened = {name: Timing(tuple(results[name]["open_seconds"])).median * 1e3
              for name in ("native", "reference") if name in results}
    lines = [f"read bandwidth now, both cores: {bandwidth:.1f} GB/s "
             f"(aios_native stream_checksum over the f32 bytes, its own process)",
             f"ingest, durable (fsync per {INGEST_BATCH:,}-row batch, int8 + f16 copies "
             f"persisted per segment): {ingest:,.0f} vectors/s"]
    if opened:
        lines.append("open the store, fresh process: " + ", ".join(
            f"{name} {ms:.1f} ms" for name, ms in opened.items()))
    return "\n".join([*lines, "", markdown_table(rows)])


# -- a child: one candidate, timed on the shared files ---------------------------------------

def run_worker(name: str, workdir: Path, calls: int, round_index: int) -> dict:
    data = np.load(workdir / "data.npy", mmap_mode="r")
    if name == FLOOR:
        return {"seconds": time_floors(data, calls)}
    candidate = CANDIDATES[name]
    queries = np.load(workdir / "queries.npy")
    exact = np.load(workdir / "exact.npy")
    search, opened = SEARCHES[name](workdir, np.asarray(data))
    if candidate.batch > 1:
        calls = max(2, calls // 3)
    # Each round starts further along the query pool, so rounds time different queries.
    first = round_index * calls * candidate.batch
    picks = [np.arange(first + i * candidate.batch, first + (i + 1) * candidate.batch)
             % QUERY_POOL for i in range(calls)]
    search(queries[picks[-1]])  # warm-up: page faults, the copies' checks, thread pools
    seconds, recall = [], []
    for chosen in picks:
        start = time.perf_counter()
        found = search(queries[chosen])
        seconds.append(time.perf_counter() - start)
        recall.extend(len(set(f.tolist()) & set(e.tolist())) / K
                      for f, e in zip(found, exact[chosen], strict=True))
    return {"seconds": seconds, "recall": recall,
            **({"open_seconds": opened} if opened is not None else {})}


def time_floors(data: np.ndarray, calls: int) -> dict[str, list[float]]:
    """Stream the bytes of each copy (a prefix of the data file of that size), interleaved."""
    from aios_native import _native

    raw = np.asarray(data).reshape(-1).view(np.uint8)
    n, dim = data.shape
    spans = {reads: raw[:n * per_row(dim)] for reads, per_row in BYTES_PER_ROW.items()}
    for span in spans.values():
        _native.stream_checksum(span)  # warm-up: map the pages into this process
    seconds: dict[str, list[float]] = {reads: [] for reads in spans}
    for _ in range(calls):
        for reads, span in spans.items():
            start = time.perf_counter()
            _native.stream_checksum(span)
            seconds[reads].append(time.perf_counter() - start)
    return seconds


def _store_search(backend: str, precision: str = "f32") -> Setup:
    def build(workdir: Path, data: np.ndarray) -> tuple[Search, float | None]:
        from aios.memory import open_memory

        # The first open pays this process's lazy imports; the second is what an open costs.
        open_memory(workdir / "store", backend=backend, read_only=True).close()
        started = time.perf_counter()
        store = open_memory(workdir / "store", backend=backend, read_only=True)
        opened = time.perf_counter() - started

        def search(queries: np.ndarray) -> np.ndarray:
            # One query goes in as a vector (the common call), a batch as a matrix.
            found = store.search(queries[0] if len(queries) == 1 else queries, K, metric="dot",
                                 precision=precision)
            results = [found] if len(queries) == 1 else found
            return np.array([[int(i) for i in result.ids] for result in results])

        return search, opened
    return build


def _numpy_search(workdir: Path, data: np.ndarray) -> tuple[Search, None]:
    def search(queries: np.ndarray) -> np.ndarray:
        scores = data @ queries.T  # (rows, queries)
        top = np.argpartition(-scores, K - 1, axis=0)[:K]
        order = np.argsort(-np.take_along_axis(scores, top, axis=0), axis=0)
        return np.take_along_axis(top, order, axis=0).T

    return search, None


def _faiss_search(workdir: Path, data: np.ndarray) -> tuple[Search, None]:
    import faiss

    index = faiss.IndexFlatIP(data.shape[1])
    index.add(np.ascontiguousarray(data))
    return (lambda queries: index.search(queries, K)[1]), None


SEARCHES: dict[str, Setup] = {
    "native": _store_search("native"),
    "native-batch": _store_search("native"),
    "native-i8": _store_search("native", "i8"),
    "native-f16": _store_search("native", "f16"),
    "numpy": _numpy_search,
    "numpy-batch": _numpy_search,
    "reference": _store_search("reference"),
    "faiss": _faiss_search,
    "faiss-batch": _faiss_search,
}


if __name__ == "__main__":
    main()
