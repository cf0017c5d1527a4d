"""Reading training recipe files: YAML, one dataclass per pack, with `extends`.

Every pack's recipe is a frozen dataclass parsed by `aios.config.parse_dataclass`, so mistakes
are reported like config mistakes. `extends: OTHER.yaml` (relative to the file) starts from
another recipe and overrides only the keys given, so a variant (an autoregressive baseline, a
jointly trained backbone) states just what differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from aios.config import parse_dataclass
from aios.errors import AiosError, ConfigError
from aios.io import write_atomic


def load_recipe_file(cls: type, path: str | os.PathLike[str]) -> Any:
    """Parse a recipe file into `cls`; mistakes are `ConfigError`s naming the file and key."""
    return parse_dataclass(cls, read_recipe_data(Path(path)), source=str(path))


def read_recipe_data(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The plain data of a recipe file with its `extends` chain merged in."""
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot be read ({exc.strerror})",
                          "give the path of a recipe YAML file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, "(document)", f"malformed YAML ({exc})",
                          "fix the YAML syntax") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict) or "extends" not in data:
        return data
    base = data.pop("extends")
    if not isinstance(base, str):
        raise ConfigError(source, "extends", "expected the path of another recipe file",
                          "write e.g. `extends: default.yaml`")
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(source, "extends", f"{base} extends itself (a cycle)",
                          "point `extends` at a recipe that does not lead back here")
    return _merge(read_recipe_data(base_path, (*seen, path.resolve())), data)


def _merge(base: Any, override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base) if isinstance(base, dict) else {}
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def bind_run(out: Path, recipe: dict[str, Any]) -> None:
    """Refuse to continue a run directory that another recipe started (`recipe` as plain
    data); a new directory is bound to this recipe by writing it as `recipe.yaml`."""
    path = out / "recipe.yaml"
    if path.exists():
        if yaml.safe_load(path.read_text()) != recipe:
            raise AiosError(f"{out} holds a run of a different recipe ({path}); resume it with "
                            "that recipe or train into a new directory")
        return
    text = yaml.safe_dump(recipe, sort_keys=False)
    write_atomic(path, lambda f: f.write(text.encode()))
