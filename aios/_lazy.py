"""Faces that import on first use: a wing's `__init__` names its public API without loading it.

Why: `aios.models` offers both the torch backbone and its NumPy mirror. Importing the face must
not import torch (seconds, and absent from a core-only install), so each name is imported from
its module only when it is first read. The tables are plain literals, so the import-graph test
(`tests/test_architecture.py`) reads them with `ast` and resolves each name to its module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_face"]


def lazy_face(face: str, exports: Mapping[str, tuple[str, ...]]
              ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for the package `face`, whose `exports` map each module
    (relative to the face, e.g. ``"backbone"``) to the names it contributes."""
    where = {name: f"{face}.{module}" for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {face!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals_of_face = importlib.import_module(face).__dict__
        globals_of_face[name] = value  # later reads skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(importlib.import_module(face).__dict__))

    return __getattr__, __dir__
