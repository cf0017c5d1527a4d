"""Honest timing for the benchmark scripts: what every speed figure in the docs is taken with.

- The load average is printed before anything runs, with a warning above 0.5: on a loaded
  machine every number is a lower bound of what the code does, and ratios shift too.
- Candidates are interleaved (each round calls every candidate once, in a rotating order), so
  load that comes and goes falls on all of them alike, and every one is repeated; a timing is the
  median with its spread (the interquartile range) and the fastest run.
- torch reads ``OMP_WAIT_POLICY`` once, when it starts its OpenMP threads: by default they spin
  for a while after each parallel region and steal the cores from whatever runs next (the native
  kernels' rayon threads included). `run_under_wait_policies` therefore runs a worker script in
  one subprocess per policy (``PASSIVE`` and torch's default) and both results are shown.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Above this 1-minute load average the machine is busy and the figures are flagged.
QUIET_LOAD = 0.5
#: The OpenMP wait policies torch comparisons run under ("default" leaves the variable unset).
WAIT_POLICIES = ("PASSIVE", "default")


def load_line() -> str:
    """One line with the 1/5/15-minute load averages, and a warning when the machine is busy."""
    one, five, fifteen = os.getloadavg()
    line = f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"
    if one > QUIET_LOAD:
        line += (f"  WARNING: above {QUIET_LOAD}, other work shares the cores; these figures "
                 "are not a quiet machine's")
    return line


def table(rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: the first row is the header, underlined; columns padded to fit."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class Timing:
    """Seconds of each repeat of one candidate."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> tuple[float, float]:
        """The 25th and 75th percentiles."""
        if len(self.samples) < 2:
            return self.median, self.median
        q = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q[0], q[2]

    @property
    def best(self) -> float:
        return min(self.samples)

    def cell(self, scale: float = 1e3, unit: str = "ms", digits: int = 3) -> str:
        """``0.210 ms [0.205-0.220]``: median and interquartile range."""
        low, high = self.spread
        return (f"{self.median * scale:.{digits}f} {unit} "
                f"[{low * scale:.{digits}f}-{high * scale:.{digits}f}]")

    def to_json(self) -> list[float]:
        return list(self.samples)


def interleaved(candidates: dict[str, Callable[[], object]], rounds: int,
                calls: int = 1) -> dict[str, Timing]:
    """Time every candidate `rounds` times, one round calling each once in a rotating order;
    each sample is the mean of `calls` back-to-back calls (for calls too short to time alone).
    One untimed warm-up call each first."""
    names = list(candidates)
    for fn in candidates.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = candidates[name]
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: Timing(tuple(t)) for name, t in samples.items()}


def calls_for(fn: Callable[[], object], target_s: float = 0.01) -> int:
    """How many back-to-back calls make one sample last about `target_s`."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(1000, int(target_s / once)))


def run_under_wait_policies(argv: Sequence[str],
                            policies: Sequence[str] = WAIT_POLICIES) -> dict[str, object]:
    """Run ``python *argv`` once per OpenMP wait policy (a fresh process each, since torch reads
    the variable at start) and return what each printed on its last line, parsed as JSON."""
    results: dict[str, object] = {}
    for policy in policies:
        env = dict(os.environ)
        if policy == "default":
            env.pop("OMP_WAIT_POLICY", None)
        else:
            env["OMP_WAIT_POLICY"] = policy
        done = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the {policy} worker failed:\n{done.stderr[-2000:]}")
        results[policy] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows (the first is the header) as a Markdown table with aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


__all__ = ["QUIET_LOAD", "WAIT_POLICIES", "Timing", "calls_for", "interleaved", "load_line",
           "markdown_table", "run_under_wait_policies", "table"]
