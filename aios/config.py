"""YAML configuration -> typed, immutable config objects.

Every value remembers where it came from (a file and line, a `--set` override, the defaults, or
an `auto` choice), and every mistake is a `ConfigError` naming the file, the key path and the
fix. Plugin options are checked against the keyword parameters of the selected plugin's factory,
so a typo in a plugin option is caught at load time, not deep inside generation.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, UnionType
from typing import Any

import yaml

from aios.errors import ConfigError, PluginNotFoundError, suggest
from aios.registry import INSTALL_HINTS, Registration, Registry

#: The environment variable naming a config file when `--config` is not given.
CONFIG_ENV = "AIOS_CONFIG"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class HeadConfig:
    """Which modality head generates; options go to the head's factory (e.g. `model`)."""

    name: str = "auto"
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class SamplerConfig:
    """Which sampler walks from noise to data, and in how many steps."""

    name: str = "auto"
    steps: int = 20
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class ConditionerConfig:
    """One conditioner, applied in list order."""

    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class MemoryConfig:
    """The memory store: a backend name and a directory (no store is opened without a path);
    the embedder that fills and queries it, how documents are chunked, and whether generations
    are written back."""

    backend: str = "auto"
    path: str | None = None
    embedder: str = "auto"
    chunk_size: int = 200
    chunk_overlap: int = 50
    write_back: bool = False
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class QuantizerConfig:
    """The weight quantizer used by `aios quantize` and quantized model loading."""

    name: str = "auto"
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class RuntimeConfig:
    """What runs the network: `name` (numpy, torch), `device` (cpu, cuda, cuda:N, mps) and
    `dtype` (float32, bfloat16, float16); `auto` is resolved by `aios.runtime`, which
    `aios config show` reports. `compile: true` runs the torch network through
    `torch.compile` (opt-in: it did not pay on the CPU measured, docs/runtime.md)."""

    name: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False


@dataclass(frozen=True)
class GenerateConfig:
    """Defaults for one generation call; `diffuse()` arguments override them."""

    modality: str | None = None
    seed: int | None = None
    guidance_scale: float = 1.0


@dataclass(frozen=True)
class EvolveConfig:
    """Self-evolution (`aios evolve`): the ladder of adapter kinds to try, cheapest first, until
    one is kept (`adapter`: `auto` = every installed kind by level, a name, or a list of names),
    where adapters live, when a request counts as uncertain, and the balanced rule that decides
    whether an adapter is kept. Options of the adapter kinds (e.g. LoRA's `rank`, `steps`) go
    beside `adapter`; each kind receives those it takes (`options_for`)."""

    adapter: tuple[str, ...] = ("auto",)
    adapters_dir: str | None = None  # None: $AIOS_ADAPTERS, else ~/.local/share/aios/adapters
    threshold: float = 1.5  # uncertainty above which a remembered request is adapted to
    min_gain: float = 0.05  # held-out perplexity on the new text must fall by this share
    max_base_loss: float = 0.02  # base-domain perplexity may rise by at most this share
    held_out: float = 0.1  # share of the new text kept aside to check the adapter
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def options_for(self, factory: Any) -> dict[str, Any]:
        """The options that one adapter kind's factory takes."""
        params, takes_any, _ = _factory_params(factory)
        return {k: v for k, v in self.options.items() if takes_any or k in params}


@dataclass(frozen=True)
class _Section:
    cls: type
    kind: str | None = None  # the plugin kind the section selects, if any
    name_key: str = "name"


_SECTIONS: dict[str, _Section] = {
    "head": _Section(HeadConfig, "head"),
    "sampler": _Section(SamplerConfig, "sampler"),
    "memory": _Section(MemoryConfig, "storage", "backend"),
    "quantizer": _Section(QuantizerConfig, "quantizer"),
    "generate": _Section(GenerateConfig),
    "runtime": _Section(RuntimeConfig),
    "evolve": _Section(EvolveConfig),  # its `adapter` ladder is resolved by evolve_section
}
_CONDITIONERS = "conditioners"
_EVOLVE_OWN = tuple(f.name for f in dataclasses.fields(EvolveConfig) if f.name != "options")
_TOP_LEVEL = (*_SECTIONS, _CONDITIONERS)


@dataclass(frozen=True)
class Config:
    """The effective configuration; `origins` maps each key path to where its value came from."""

    head: HeadConfig = HeadConfig()
    sampler: SamplerConfig = SamplerConfig()
    conditioners: tuple[ConditionerConfig, ...] = ()
    memory: MemoryConfig = MemoryConfig()
    quantizer: QuantizerConfig = QuantizerConfig()
    generate: GenerateConfig = GenerateConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    evolve: EvolveConfig = EvolveConfig()
    origins: Mapping[str, str] = field(default_factory=lambda: _EMPTY, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain nested data, in the same shape as the YAML file (options flattened back)."""
        data: dict[str, Any] = {name: _section_dict(getattr(self, name)) for name in _SECTIONS}
        data[_CONDITIONERS] = [_section_dict(c) for c in self.conditioners]
        return data

    def to_yaml(self) -> str:
        """YAML that loads back into an equal config."""
        return yaml.safe_dump(self.as_dict(), sort_keys=False)


def _section_dict(section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.name == "options":
            out.update(value)
        else:
            out[f.name] = value
    return out


# -- reading -----------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> Config:
    """Load a YAML config, apply `KEY=VALUE` overrides, validate, and resolve `auto` choices.

    `path` None means `$AIOS_CONFIG` if set, else the built-in defaults. With a `registry`, plugin
    names are checked, `auto` is resolved to the best installed plugin, and plugin options are
    checked against the plugin's factory; without one only the core's own keys are checked.
    """
    if path is None and os.environ.get(CONFIG_ENV):
        path = os.environ[CONFIG_ENV]
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    source = "(defaults)"
    if path is not None:
        source = str(path)
        data, lines = _read_yaml(Path(path))
        origins.update({key: f"{source}:{line}" for key, line in lines.items()})
    for item in overrides:
        key, value = _parse_override(item)
        _set_path(data, key, value)
        origins[key] = "--set"
    return _Builder(source, origins, registry).build(data)


#: The largest config file read: configs are a few kilobytes; more is a mistake or an attack.
MAX_CONFIG_BYTES = 1 << 20
#: The most values a config may hold once its aliases are expanded (a 469-byte "billion laughs"
#: file expands to billions and used 5.7 GB before the limit).
MAX_CONFIG_NODES = 100_000


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a file into plain data plus the 1-based line of every key path."""
    if not path.is_file():
        raise ConfigError(str(path), "(file)", "the config file does not exist",
                          "pass an existing YAML file to --config or unset $AIOS_CONFIG")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), "(file)", f"the config file is {size} bytes, more than "
                          f"the {MAX_CONFIG_BYTES} a config may be",
                          "pass a config file (a few kilobytes of YAML), not a data file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "(file)", f"the config file is not UTF-8 text ({exc})",
                          "save it as UTF-8 YAML") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {}
        _check_expanded_size(node, str(path))
        lines: dict[str, int] = {}
        _index_lines(node, "", lines)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(where, "(document)", f"malformed YAML ({problem})",
                          "fix the YAML syntax there (check indentation, colons and quotes)"
                          ) from exc
    except RecursionError:
        raise ConfigError(str(path), "(document)", "the YAML nests too deeply to read",
                          "write sections a few levels deep") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(str(path), "(document)",
                          f"the top level is a {type(data).__name__}, not a mapping",
                          f"write `key: value` sections: {', '.join(_TOP_LEVEL)}")
    return data, lines


def _check_expanded_size(root: yaml.Node, where: str) -> None:
    """Refuse a document whose aliases expand to more than `MAX_CONFIG_NODES` values (or into
    themselves), counted on the node graph without expanding it (each node once)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            in_progress.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_CONFIG_NODES:
                raise ConfigError(where, "(document)",
                                  f"its aliases expand to more than {MAX_CONFIG_NODES} values",
                                  "write the values out, or use fewer nested aliases")
            continue
        if key in in_progress:
            raise ConfigError(where, "(document)", "an alias refers to a value that contains "
                              "it, so it expands without end", "remove the recursive alias")
        in_progress.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _index_lines(node: yaml.Node, prefix: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            _index_lines(value_node, key + ".", lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = f"{prefix}{index}"
            lines[key] = item.start_mark.line + 1
            _index_lines(item, key + ".", lines)


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", item, "an override must be KEY=VALUE",
                          "write it like `--set sampler.steps=20`")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("--set", key, f"the value is {len(raw)} characters long",
                          "put large values in a config file")
    if not raw.strip():
        return key, None
    loader = yaml.SafeLoader(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return key, None
        _check_expanded_size(node, "--set")
        value = loader.construct_document(node)
    except (yaml.YAMLError, RecursionError):
        value = raw
    finally:
        loader.dispose()
    return key, value


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    target: Any = data
    for depth, part in enumerate(parts[:-1]):
        nxt_is_index = parts[depth + 1].isdigit()
        if isinstance(target, list):
            target = _list_slot(target, part, key, nxt_is_index)
            continue
        child = target.get(part)
        if not isinstance(child, (dict, list)):
            child = [] if nxt_is_index else {}
            target[part] = child
        target = child
    last = parts[-1]
    if isinstance(target, list):
        index = _index(last, key)
        while len(target) <= index:
            target.append({})
        target[index] = value
    else:
        target[last] = value


def _list_slot(target: list[Any], part: str, key: str, nxt_is_index: bool) -> Any:
    index = _index(part, key)
    while len(target) <= index:
        target.append({})
    if isinstance(target[index], str):  # `conditioners: [memory]` shorthand
        target[index] = {"name": target[index]}
    if not isinstance(target[index], (dict, list)):
        target[index] = [] if nxt_is_index else {}
    return target[index]


def _index(part: str, key: str) -> int:
    if not part.isdigit():
        raise ConfigError("--set", key, f"{part!r} indexes a list but is not a number",
                          "use a list index such as `conditioners.0.top_k=3`")
    return int(part)


# -- validating --------------------------------------------------------------------------------


class _Builder:
    def __init__(self, source: str, origins: dict[str, str], registry: Registry | None) -> None:
        self.source = source
        self.origins = origins
        self.registry = registry

    def where(self, key: str) -> str:
        """Where the value at `key` came from, else where a value inside it came from."""
        if key in self.origins:
            return self.origins[key]
        inner = next((o for k, o in self.origins.items() if k.startswith(key + ".")), None)
        return inner or self.origins.get(key.split(".")[0]) or self.source

    def build(self, data: dict[str, Any]) -> Config:
        for key in data:
            if key not in _TOP_LEVEL:
                raise self.unknown_key(str(key), _TOP_LEVEL)
        head = self.head_for_modality(data.get("head"), data.get("generate"))
        sections: dict[str, Any] = {"head": self.section("head", head, None)}
        # The sampler must speak the head's family, so `auto` only considers those.
        sections["sampler"] = self.section("sampler", data.get("sampler"),
                                           self.family_of(sections["head"].name))
        for name in ("memory", "quantizer", "generate", "runtime"):
            sections[name] = self.section(name, data.get(name), None)
        sections["evolve"] = self.evolve_section(data.get("evolve"))
        sections[_CONDITIONERS] = self.conditioners(data.get(_CONDITIONERS))
        sections["memory"] = self.resolve_embedder(sections["memory"])
        return Config(**sections, origins=MappingProxyType(dict(self.origins)))

    def evolve_section(self, raw: Any) -> EvolveConfig:
        """`evolve.adapter` names the ladder: `auto` (every installed adapter kind, cheapest
        level first), a name, or a list of names and `auto`s, tried in order. The options
        beside it must each be taken by at least one kind of the ladder."""
        raw = dict(raw) if isinstance(raw, dict) else raw
        wanted = raw.pop("adapter", "auto") if isinstance(raw, dict) else "auto"
        names = [wanted] if isinstance(wanted, str) else wanted
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(self.where("evolve.adapter"), "evolve.adapter",
                              f"expected a name or a list of names, got {wanted!r}",
                              "write `adapter: auto`, `adapter: lora` or "
                              "`adapter: [sidenet, lora]`")
        options = {}
        if isinstance(raw, dict):
            options = {k: raw.pop(k) for k in list(raw) if k not in _EVOLVE_OWN}
        config = self.section("evolve", raw, None)
        if self.registry is None:
            if options:
                raise self.unknown_key(f"evolve.{next(iter(options))}", _EVOLVE_OWN)
            return dataclasses.replace(config, adapter=tuple(names))
        ladder: list[Registration] = []
        for name in names:
            if name == "auto":
                found = sorted((self.registry.get("adapter", n)
                                for n in self.registry.names("adapter")),
                               key=lambda e: (-e.priority, e.name))
                self.origins["evolve.adapter"] = ("auto -> every installed adapter kind, "
                                                  "cheapest first: " + ", ".join(
                                                      e.name for e in found))
            else:
                found = [self.resolve("adapter", "evolve.adapter", name, None)]
            ladder += [e for e in found if e is not None and e not in ladder]
        checked: dict[str, Any] = {}
        for registration in ladder:
            takes = {k: v for k, v in options.items()
                     if k in _factory_params(registration.factory)[0]}
            checked.update(self.plugin_options(registration, "evolve", takes, set(_EVOLVE_OWN)))
        unknown = [k for k in options if k not in checked]
        if unknown:
            valid = sorted({*_EVOLVE_OWN, *(p for e in ladder
                                            for p in _factory_params(e.factory)[0])})
            kinds = ", ".join(e.name for e in ladder) or "none installed"
            raise self.unknown_key(f"evolve.{unknown[0]}", valid, f" (adapter kinds: {kinds})")
        return dataclasses.replace(config, adapter=tuple(self.registry.selector(e)
                                                         for e in ladder),
                                   options=MappingProxyType(checked))

    def resolve_embedder(self, memory: MemoryConfig) -> MemoryConfig:
        """`memory.embedder` must name an installed embedder; `auto` becomes the best one
        (it is built only when memory is used)."""
        registration = self.resolve("embedder", "memory.embedder", memory.embedder, None)
        if registration is None:
            return memory
        return dataclasses.replace(memory, embedder=self.registry.selector(registration))

    def head_for_modality(self, head: Any, generate: Any) -> Any:
        """`head: auto` with `generate.modality` set picks the best head of that modality (a
        head factory's `modality` class attribute), so `--modality image` needs no head name."""
        modality = generate.get("modality") if isinstance(generate, dict) else None
        if (self.registry is None or not isinstance(modality, str)
                or not isinstance(head, (dict, type(None)))
                or (head or {}).get("name", "auto") != "auto"):
            return head
        best = self.registry.best("head", modality=modality)
        if best is None:
            return head  # the engine says which pack to install for the modality
        candidates = self.registry.names("head", modality=modality)
        self.origins["head.name"] = (f"auto -> best installed head for modality {modality!r} "
                                     f"(priority {best.priority}) of: {', '.join(candidates)}")
        return {**(head or {}), "name": best.name}

    def family_of(self, head: str) -> str | None:
        if self.registry is None:
            return None
        try:
            return self.registry.get("head", head).family
        except PluginNotFoundError:
            return None

    def section(self, name: str, raw: Any, family: str | None) -> Any:
        spec = _SECTIONS[name]
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(self.where(name), name, f"expected a mapping, got {_type_name(raw)}",
                              f"write it as `{name}: {{key: value}}`")
        return self.typed(spec.cls, name, raw, spec.kind, spec.name_key, family)

    def conditioners(self, raw: Any) -> tuple[ConditionerConfig, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise ConfigError(self.where(_CONDITIONERS), _CONDITIONERS,
                              f"expected a list, got {_type_name(raw)}",
                              "write it as `conditioners: [{name: NAME, ...}]`")
        items = []
        for index, item in enumerate(raw):
            key = f"{_CONDITIONERS}.{index}"
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, dict) or "name" not in item:
                raise ConfigError(self.where(key), key, "a conditioner needs a `name`",
                                  "write it as `{name: NAME, option: value}`")
            items.append(self.typed(ConditionerConfig, key, item, "conditioner", "name", None))
        return tuple(items)

    def typed(self, cls: type, prefix: str, raw: dict[str, Any], kind: str | None,
              name_key: str, family: str | None) -> Any:
        hints = typing.get_type_hints(cls)
        own = [f.name for f in dataclasses.fields(cls) if f.name != "options"]
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in raw.items():
            key = str(key)
            if key in own:
                values[key] = _check_type(value, hints[key], self.where(f"{prefix}.{key}"),
                                          f"{prefix}.{key}")
            else:
                extra[key] = value
        registration = None
        if kind is not None:
            chosen = values.get(name_key, _default_of(cls, name_key))
            registration = self.resolve(kind, f"{prefix}.{name_key}", chosen, family)
            if registration is not None:  # `plugin:name` when another plugin holds the name
                values[name_key] = self.registry.selector(registration)
        if registration is None:
            if extra:
                key = next(iter(extra))
                raise self.unknown_key(f"{prefix}.{key}", own)
        else:
            extra = self.plugin_options(registration, prefix, extra, set(own))
        if "options" in hints:
            values["options"] = MappingProxyType(extra)
        return cls(**values)

    def resolve(self, kind: str, key: str, chosen: str, family: str | None) -> Registration | None:
        if self.registry is None:
            return None
        if chosen == "auto":
            best = self.registry.best(kind, family=family)
            candidates = self.registry.names(kind, family=family)
            if best is None:
                self.origins[key] = f"auto: no {kind} installed"
                return None
            self.origins[key] = (f"auto -> best installed {kind} (priority {best.priority}) "
                                 f"of: {', '.join(candidates)}")
            return best
        try:
            registration = self.registry.get(kind, chosen)
        except PluginNotFoundError as exc:
            problem = f"unknown {kind} {chosen!r}"
            if exc.suggestions:
                problem += f" (did you mean {' or '.join(map(repr, exc.suggestions))}?)"
            raise ConfigError(self.where(key), key, problem, _choose_fix(exc)) from None
        if family is not None and registration.family not in (None, family):
            fitting = ", ".join(self.registry.names(kind, family=family)) or "none installed"
            problem = f"{kind} {chosen!r} is {registration.family} but the head is {family}"
            raise ConfigError(self.where(key), key, problem, f"choose a {family} {kind}: {fitting}")
        return registration

    def plugin_options(self, registration: Registration, prefix: str, extra: dict[str, Any],
                       own: set[str]) -> dict[str, Any]:
        params, takes_any, hints = _factory_params(registration.factory)
        params = {p: v for p, v in params.items() if p not in own}
        if registration.kind == "head":
            # the engine passes the `runtime:` section resolved (aios.engine.head_runtime)
            params.pop("runtime", None)
            if "runtime" in extra:
                raise ConfigError(self.where(f"{prefix}.runtime"), f"{prefix}.runtime",
                                  "the runtime is not a head option",
                                  "set it in the `runtime:` section: --set runtime.name=..., "
                                  "runtime.device=..., runtime.dtype=...")
        checked: dict[str, Any] = {}
        for key, value in extra.items():
            path = f"{prefix}.{key}"
            if key in params:
                hint = hints.get(key)
                checked[key] = _check_type(value, hint, self.where(path), path) if hint else value
            elif takes_any:
                checked[key] = value
            else:
                raise self.unknown_key(path, sorted(own | set(params)),
                                       f" ({registration.kind} {registration.name!r} takes: "
                                       f"{', '.join(params) or 'no options'})")
        for param, required in params.items():
            if required and param not in checked:
                raise ConfigError(self.where(prefix), f"{prefix}.{param}",
                                  f"{registration.kind} {registration.name!r} requires {param!r}",
                                  f"set it, e.g. `--set {prefix}.{param}=...`")
        return checked

    def unknown_key(self, key: str, valid: Iterable[str], extra: str = "") -> ConfigError:
        return unknown_key_error(self.where(key), key, valid, extra)


def unknown_key_error(where: str, key: str, valid: Iterable[str], extra: str = "") -> ConfigError:
    """The error for a key that is not one of `valid`, with "did you mean" suggestions."""
    last = key.rsplit(".", 1)[-1]
    valid = list(valid)
    close = suggest(last, valid)
    fix = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    fix = (fix + " " if fix else "") + f"Valid keys: {', '.join(valid)}{extra}"
    return ConfigError(where, key, "unknown key", fix)


def parse_dataclass(cls: type, data: Any, *, source: str, prefix: str = "") -> Any:
    """Build a (frozen) dataclass from YAML data with the config's error messages.

    Unknown keys get suggestions, simple fields are type-checked, nested dataclass fields are
    parsed recursively and lists become tuples for tuple fields. Used for recipes and other
    structured files that are not the main config.
    """
    where = prefix or "(document)"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, where, f"expected a mapping, got {_type_name(data)}",
                          "write `key: value` pairs")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise unknown_key_error(source, path, names)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = parse_dataclass(hint, value, source=source, prefix=path)
        elif typing.get_origin(hint) is tuple:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(source, path, f"expected a list, got {_type_name(value)}",
                                  "write a YAML list, e.g. [a, b]")
            item = typing.get_args(hint)[0]
            values[key] = tuple(_check_type(v, item, source, f"{path}.{i}")
                                for i, v in enumerate(value))
        else:
            values[key] = _check_type(value, hint, source, path)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, where, str(exc), "fix the values of this section") from exc


def _choose_fix(exc: PluginNotFoundError) -> str:
    if exc.reason:
        return exc.reason
    if exc.available:
        return f"use one of: {', '.join(exc.available)}, or `auto`"
    return INSTALL_HINTS[exc.kind]


def _default_of(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _factory_params(factory: Any) -> tuple[dict[str, bool], bool, dict[str, Any]]:
    """Keyword parameters of a factory (name -> required), whether it takes **kwargs, and hints."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}, True, {}
    params: dict[str, bool] = {}
    takes_any = False
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            takes_any = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            params[p.name] = p.default is p.empty
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations just skip type checks
        hints = {}
    return params, takes_any, hints


_SIMPLE = (bool, int, float, str)


def _check_type(value: Any, hint: Any, where: str, key: str) -> Any:
    """Check `value` against a simple annotation; return it (ints widen to float)."""
    allowed = _allowed_types(hint)
    if allowed is None:
        return value
    if value is None:
        if type(None) in allowed:
            return None
    elif isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and (int in allowed or float in allowed):
        return value if int in allowed else float(value)
    elif isinstance(value, float) and float in allowed:
        return value
    elif isinstance(value, str) and str in allowed:
        return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise ConfigError(where, key, f"expected {names}, got {_type_name(value)} {value!r}",
                      f"write a {names} value")


def _allowed_types(hint: Any) -> tuple[type, ...] | None:
    if hint in _SIMPLE:
        return (hint,)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, UnionType):
        args = typing.get_args(hint)
        if all(a in _SIMPLE or a is type(None) for a in args):
            return args
    return None


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "null"}.get(
        type(value), type(value).__name__)
