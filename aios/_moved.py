"""Old import paths of modules that moved into wings, kept working for one release.

Why a table and not a file at each old path: a module object is shared, not copied, so
`aios.weights is aios.io.weights` and a test's monkeypatch reaches the code that runs; and the
files moved whole, so branches that edited them before the move merge through git's rename
detection. Importing an old path warns (DeprecationWarning) with the new one.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

MOVED: dict[str, str] = {
    "aios.adapters": "aios.evolve.adapters",
    "aios.backbone": "aios.models.backbone",
    "aios.backbone_config": "aios.models.backbone_config",
    "aios.backbone_numpy": "aios.models.backbone_numpy",
    "aios.cli_evolve": "aios.cli.evolve",
    "aios.cli_media": "aios.cli.media",
    "aios.cli_memory": "aios.cli.memory",
    "aios.cli_quantize": "aios.cli.quantize",
    "aios.evolve_loop": "aios.evolve.loop",
    "aios.figures": "aios.training.figures",
    "aios.files": "aios.io.files",
    "aios.gaussian": "aios.models.gaussian",
    "aios.gaussian_numpy": "aios.models.gaussian_numpy",
    "aios.gaussian_recipe": "aios.training.gaussian_recipe",
    "aios.lora": "aios.models.lora",
    "aios.model_dir": "aios.models.model_dir",
    "aios.recipe_files": "aios.training.recipe_files",
    "aios.router": "aios.evolve.router",
    "aios.scoring": "aios.training.scoring",
    "aios.sidenet": "aios.models.sidenet",
    "aios.weight_formats": "aios.io.weight_formats",
    "aios.weights": "aios.io.weights",
}


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module now at the new one (the very same object)."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.new}; import it from there (the old path "
                      "goes in the next release)", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at the new path is already executed."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Put the finder on `sys.meta_path` once (importing `aios` calls this)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())  # before editable installs of an older tree
