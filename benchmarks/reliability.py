"""Figures behind docs/reliability.md: chunking time against input size (linear, not quadratic)
and the outcomes of byte-flip fuzzing of weight files and store files (child processes).

    python benchmarks/reliability.py [--quick]

Prints the load average first: timings taken on a busy machine are not comparable.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzzing import fuzz, variants_flipping

from aios.io.weights import save_weights
from aios.memory.chunking import chunk_text
from aios.quant import ReferenceQuantizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import load_line


def chunking_table(sizes_mb: list[int]) -> None:
    print("| input (one line, MB) | chunks | seconds | seconds per MB |")
    print("|---|---|---|---|")
    for mb in sizes_mb:
        text = "word " * ((mb << 20) // 5)
        start = time.perf_counter()
        chunks = chunk_text(text)
        elapsed = time.perf_counter() - start
        print(f"| {mb} | {len(chunks)} | {elapsed:.2f} | {elapsed / mb:.3f} |")


def weights_fuzz_table() -> None:
    rng = np.random.default_rng(0)
    tensors = {"a": rng.normal(size=(3, 5)).astype(np.float32),
               "b.x": np.arange(7, dtype=np.int64),
               "q": ReferenceQuantizer(bits=4, group_size=32).quantize(
                   rng.normal(size=(4, 64)).astype(np.float32), name="q")}
    with tempfile.TemporaryDirectory() as tmp:
        path = save_weights(Path(tmp) / "model.arrow", tensors, metadata={"k": "v"})
        size = path.stat().st_size
        variants = variants_flipping(range(path.stat().st_size), (0xFF, 0x01))
        start = time.perf_counter()
        report = fuzz(path, "aios.weights:load_weights", variants,
                      error="aios.errors.WeightFileError")
        elapsed = time.perf_counter() - start
    print("| file | variants | refused (error naming the file) | loaded intact | crashes | "
          "other exceptions | seconds |")
    print("|---|---|---|---|---|---|---|")
    print(f"| weight file, {size} bytes, every byte ^0xFF and ^0x01 | "
          f"{len(variants)} | {report.outcomes['error']} | {report.outcomes['loaded']} | "
          f"{report.crashes} | {len(report.failures) - report.crashes} | {elapsed:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    args = parser.parse_args()
    print(load_line())
    chunking_table([1, 4] if args.quick else [1, 4, 16, 50])
    print()
    weights_fuzz_table()


if __name__ == "__main__":
    main()
