"""One engine for every modality: what the first use of each modality costs, and the memory that
sharing the backbone saves.

Each measurement runs in a fresh process (so nothing is cached between them):
- `one engine`: one ArrowEngine generates text, then an image, then a sound; per modality the
  time of its first `diffuse` (building its head included) and the process's resident memory;
- `three engines`: the same three generations from three engines, one per modality, each
  loading its own copy of the backbone (the sharing switched off), for the memory comparison.

    python benchmarks/engine.py [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import load_line

CHILD = r"""
import json, resource, sys, time
shared = sys.argv[1] == "shared"
steps = int(sys.argv[2])
import aios.models.backbone_numpy as bn
from aios import ArrowEngine

def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

rows = []
start = time.perf_counter()
engines = []
for modality, prompt in (("text", "Once upon a time"), ("image", "sneaker"), ("audio", "seven")):
    if not shared:
        bn._SHARED.clear()  # each engine then loads its own copy of the backbone
        engines.append(ArrowEngine.from_config(overrides=[f"generate.modality={modality}"]))
    elif not engines:
        engines.append(ArrowEngine.from_config())
    t0 = time.perf_counter()
    engines[-1].diffuse(prompt, modality=modality, num_steps=steps, seed=0)
    rows.append((modality, (time.perf_counter() - t0) * 1000, rss_mib()))
backbones = {id(e.head_for(m).model.backbone) for e in engines for m in e._heads}
print(json.dumps({"rows": rows, "backbones": len(backbones),
                  "total_s": time.perf_counter() - start}))
"""


def measure(mode: str, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(steps)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    print(load_line())
    results = {mode: measure(mode, args.steps) for mode in ("shared", "separate")}
    print(f"\n{args.steps} steps per generation, each mode in a fresh process\n")
    print("| mode | modality | first diffuse (ms, head built on first use) | resident MiB after |")
    print("|---|---|---|---|")
    for mode, label in (("shared", "one engine"), ("separate", "three engines")):
        for modality, ms, rss in results[mode]["rows"]:
            print(f"| {label} | {modality} | {ms:.0f} | {rss:.0f} |")
    for mode, label in (("shared", "one engine"), ("separate", "three engines")):
        print(f"\n{label}: {results[mode]['backbones']} backbone(s) in memory, "
              f"{results[mode]['total_s']:.1f} s in all")


if __name__ == "__main__":
    main()
