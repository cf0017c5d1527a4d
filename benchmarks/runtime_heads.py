"""Each shipped head on each runtime it honours: milliseconds per generation, in one run.

    python benchmarks/runtime_heads.py [--rounds 5] [--heads text,image,audio]
                                       [--text-length 32] [--steps 20]

What `runtime:` buys per head (docs/runtime.md, "Which heads honour the runtime"): every row
is `ArrowEngine.diffuse` with the model loaded (one untimed warm-up), the candidates of a head
interleaved round by round (`measure.interleaved`), median [interquartile range]. Rows:

- `text` (the default model, SmolLM2-135M adapted to block diffusion): numpy (int8 weights and
  activations, what `auto` takes on a CPU), torch float32 and bfloat16 on the CPU,
  `--text-length` new tokens with block-threshold;
- `image` and `audio`: numpy, torch float32 and torch bfloat16 on the CPU, DDIM with `--steps`;
- on a machine with a GPU, each head's torch rows again on it (`runtime.device: auto`).

The output column checks that a row still generates (the first words, or the mean absolute
difference from the numpy row's image / samples for the same seed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import interleaved, load_line, table

PROMPTS = {"text": "The best way to learn a new language is", "image": "sneaker", "audio": "yes"}


def settings_for(head: str, gpu: bool) -> dict[str, list[str]]:
    """Row label -> the `--set` overrides of that row."""
    rows = {"numpy": ["runtime.name=numpy"]}
    for dtype in ("float32", "bfloat16"):
        rows[f"torch cpu {dtype}"] = ["runtime.name=torch", "runtime.device=cpu",
                                      f"runtime.dtype={dtype}"]
        if gpu:
            rows[f"torch gpu {dtype}"] = ["runtime.name=torch", f"runtime.dtype={dtype}"]
    return rows


def generation(head: str, overrides: list[str], args: argparse.Namespace
               ) -> Callable[[], Any]:
    from aios.engine import ArrowEngine

    engine = ArrowEngine.from_config(overrides=[f"head.name={head}", *overrides])
    if head == "text":
        return lambda: engine.diffuse(PROMPTS[head], length=args.text_length, seed=0)
    return lambda: engine.diffuse(PROMPTS[head], num_steps=args.steps, seed=0)


def output_cell(head: str, output: Any, reference: Any) -> str:
    if head == "text":
        return repr(" ".join(output.removeprefix(PROMPTS[head]).split()[:6]) + " ...")
    values = np.asarray(output if head == "image" else output.samples, dtype=np.float64)
    if reference is None:
        return f"reference (max |x| {np.abs(values).max():.3g})"
    ref = np.asarray(reference if head == "image" else reference.samples, dtype=np.float64)
    return f"mean |x - numpy| {np.abs(values - ref).mean():.3g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--heads", default="text,image,audio")
    parser.add_argument("--text-length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    os.environ.pop("AIOS_TEXT_MODEL", None)  # the default text model, as a user gets it
    from aios.runtime import list_devices

    gpu = any(d.name != "cpu" for d in list_devices())
    print(load_line())
    print(f"devices: {', '.join(d.name for d in list_devices())}; rounds {args.rounds}\n")
    rows: list[list[str]] = [["head", "runtime", "ms per generation [IQR]", "output"]]
    for head in args.heads.split(","):
        candidates = {label: generation(head, overrides, args)
                      for label, overrides in settings_for(head, gpu).items()}
        outputs = {label: fn() for label, fn in candidates.items()}
        timings = interleaved(candidates, args.rounds)
        reference = outputs.get("numpy")
        for label, timing in timings.items():
            rows.append([head, label, timing.cell(digits=0),
                         output_cell(head, outputs[label],
                                     None if label == "numpy" else reference)])
    print(table(rows))
    print("\n" + load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
