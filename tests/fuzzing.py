"""Byte-level fuzzing of file loaders in child processes, so a crash is seen, not suffered.

A loader that touches a damaged buffer can kill the interpreter (SIGSEGV, SIGABRT) instead of
raising; in-process fuzzing would then take the test run down with it. `fuzz` hands the damaged
variants of a file to one child process that loads them in turn and prints one line per variant
(``index outcome``); when the child dies, the variant it was on is recorded with the signal and
a fresh child carries on after it.

A loader passes when every variant either loads or raises the expected error class; the child
reports any other exception as ``other:<type>: message`` (a traceback for a user).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The child: loads each variant with `loader` (module:function taking a path) and reports.
_CHILD = r"""
import importlib, json, sys
spec = json.loads(sys.stdin.read())
module, _, name = spec["loader"].partition(":")
load = getattr(importlib.import_module(module), name)
module, _, name = spec["error"].rpartition(".")
expected = getattr(importlib.import_module(module), name)
pristine = open(spec["file"], "rb").read()


def touch(loaded):
    # Read every byte a loader hands out: a view past the mapped file would fault here.
    from collections.abc import Mapping
    import numpy as np
    for name in ("verify", "check"):
        if callable(getattr(loaded, name, None)):
            getattr(loaded, name)()
    if isinstance(loaded, Mapping):
        for key in loaded:
            value = loaded[key]
            for part in (value, getattr(value, "data", None), getattr(value, "scales", None),
                         getattr(value, "zero_points", None)):
                if isinstance(part, np.ndarray):
                    part.view(np.uint8).sum() if part.size else None

target = spec["target"]
for index, (kind, at, value) in enumerate(spec["variants"]):
    if index < spec["start"]:
        continue
    data = bytearray(pristine)
    if kind == "flip":
        data[at] ^= value
    elif kind == "set":
        data[at] = value
    elif kind == "truncate":
        del data[at:]
    with open(target, "wb") as f:
        f.write(data)
    print(index, "start", flush=True)
    try:
        touch(load(target))
        outcome = "loaded"
    except expected as exc:
        outcome = "error" if str(spec["name"]) in str(exc) else "error-unnamed: " + str(exc)
    except RecursionError as exc:
        outcome = "other:RecursionError"
    except Exception as exc:
        outcome = f"other:{type(exc).__name__}: {exc}"[:300]
    print(index, outcome.replace("\n", " "), flush=True)
"""


@dataclass
class FuzzReport:
    """What the variants did: counts by outcome and the variants that misbehaved."""

    outcomes: Counter = field(default_factory=Counter)
    failures: list[tuple[tuple[str, int, int], str]] = field(default_factory=list)
    by_variant: dict[int, str] = field(default_factory=dict)  # index -> outcome kind

    @property
    def crashes(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k.startswith("signal"))


def variants_flipping(positions: Sequence[int], values: Sequence[int] = (0xFF,)
                      ) -> list[tuple[str, int, int]]:
    return [("flip", at, v) for at in positions for v in values]


def fuzz(pristine: Path, loader: str, variants: list[tuple[str, int, int]], *,
         error: str = "aios.errors.AiosError", timeout: float = 600.0,
         target: Path | None = None, named: str | None = None) -> FuzzReport:
    """Load every variant of `pristine` in child processes; see the module docstring.

    Each variant is written to `target` (default: a file of the same name in a temporary
    directory) and `loader` is called with that path. An error must name the damaged file:
    `named` (default: the target's path) must appear in its message.
    """
    report = FuzzReport()
    with tempfile.TemporaryDirectory() as tmp:
        target = str(target or Path(tmp) / pristine.name)
        start = 0
        tests = str(Path(__file__).parent)  # loaders may live in test modules
        env = {**os.environ, "PYTHONFAULTHANDLER": "",
               "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
        while start < len(variants):
            spec = {"loader": loader, "error": error, "file": str(pristine), "target": target,
                    "variants": variants, "start": start, "name": named or target}
            child = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(spec),
                                   cwd=Path(__file__).parent.parent,
                                   capture_output=True, text=True, timeout=timeout, env=env)
            current, done = start, start
            for line in child.stdout.splitlines():
                index, _, outcome = line.partition(" ")
                current = int(index)
                if outcome == "start":
                    continue
                kind = outcome.split(":")[0] if outcome.startswith("other") else outcome
                kind = "error-unnamed" if kind.startswith("error-unnamed") else kind
                report.outcomes[kind] += 1
                report.by_variant[current] = kind
                if kind not in ("loaded", "error"):
                    report.failures.append((tuple(variants[current]), outcome))
                done = current + 1
            if child.returncode == 0:
                break
            if done > current or (child.returncode > 0 and not child.stdout):
                raise RuntimeError(f"the fuzz child failed outside a variant:\n{child.stderr}")
            name = (signal.Signals(-child.returncode).name if child.returncode < 0
                    else f"exit {child.returncode}")
            report.outcomes[f"signal {name}"] += 1
            report.by_variant[current] = f"signal {name}"
            report.failures.append((tuple(variants[current]), name))
            start = current + 1
    return report
