"""The int8 product as a model calls it: with other work between calls, on weights not in cache.

    python benchmarks/quant_calls.py [--rows 3072] [--cols 576] [--batch 8] [--calls 200]

A model's forward calls the quantized product about 120 times per step (the 135M text model:
30 layers x 4 products), with NumPy work (norms, attention) between the calls, and its weights
(100 MB of int8 codes) come from memory each time. A loop over one matrix, back to back, shows
neither: its weights stay in cache and the kernels' threads stay awake. This script times one
product (`--rows` x `--cols`, `--batch` inputs) in four settings, each in its own process with
1 and with 2 kernel threads (``RAYON_NUM_THREADS``):

- back to back, the same matrix (the usual microbenchmark);
- with 20, 100 and 500 µs of NumPy work between calls (a thread that sleeps between calls
  must be woken again);
- cold: 60 different matrices of that shape in turn (about 100 MB at the default shape), so
  every call reads its weights from memory.

Median microseconds per call [interquartile range] over `--calls` calls (cold: 5 passes over
the 60 matrices), the settings interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Timing, load_line, table

GAPS_US = (20, 100, 500)
COLD_MATRICES = 60


def worker(args: argparse.Namespace) -> dict[str, list[float]]:
    from aios.registry import default_registry

    quantizer = default_registry().best("quantizer").factory(bits=8)
    rng = np.random.default_rng(0)
    weight = quantizer.quantize(rng.standard_normal((args.rows, args.cols)).astype(np.float32),
                                name="w")
    copies = [replace(weight, data=weight.data.copy(), scales=weight.scales.copy(),
                      zero_points=None if weight.zero_points is None
                      else weight.zero_points.copy()) for _ in range(COLD_MATRICES)]
    products = [quantizer.prepared_q8(w) for w in copies]
    x = rng.standard_normal((args.batch, args.cols)).astype(np.float32)
    out = np.empty((args.batch, args.rows), np.float32)
    filler = rng.standard_normal(2000).astype(np.float32)

    def gap(microseconds: float) -> None:
        start = time.perf_counter()
        while (time.perf_counter() - start) * 1e6 < microseconds:
            np.exp(filler)

    samples: dict[str, list[float]] = {"back to back": [], "cold (60 matrices)": []}
    samples.update({f"{g} µs of work between calls": [] for g in GAPS_US})
    for _ in range(20):
        products[0].run(x, out)
    for call in range(args.calls):
        start = time.perf_counter()
        products[0].run(x, out)
        samples["back to back"].append(time.perf_counter() - start)
        for g in GAPS_US:
            gap(g)
            start = time.perf_counter()
            products[0].run(x, out)
            samples[f"{g} µs of work between calls"].append(time.perf_counter() - start)
        if call < 5 * COLD_MATRICES:
            product = products[call % COLD_MATRICES]
            start = time.perf_counter()
            product.run(x, out)
            samples["cold (60 matrices)"].append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3072)
    parser.add_argument("--cols", type=int, default=576)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(load_line())
    print(f"int8 product {args.rows} x {args.cols}, batch {args.batch}; µs per call, median "
          "[IQR]\n")
    results = {}
    for threads in (1, 2):
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        done = subprocess.run([sys.executable, __file__, "--worker", "--rows", str(args.rows),
                               "--cols", str(args.cols), "--batch", str(args.batch),
                               "--calls", str(args.calls)],
                              env=env, capture_output=True, text=True, check=True)
        results[threads] = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [["setting", "1 thread", "2 threads"]]
    for name in results[1]:
        rows.append([name, *(Timing(tuple(results[t][name])).cell(1e6, "µs", 0)
                             for t in (1, 2))])
    print(table(rows))


if __name__ == "__main__":
    main()
