"""Helpers for testing aios plugins, for pack authors as much as for aios itself."""

from __future__ import annotations

from aios.registry import PluginInfo, Registry


def loaded_plugin(name: str, registry: Registry | None = None) -> PluginInfo:
    """Discover the installed plugins and return the one named `name` (its entry-point name).

    Fails with the recorded load error when the plugin was skipped, so a test shows *why*.
    """
    registry = registry or Registry.discover()
    if name in registry.plugins:
        return registry.plugins[name]
    reasons = [str(f) for f in registry.failures if f.plugin == name]
    raise AssertionError(
        f"plugin {name!r} did not load: " + ("; ".join(reasons) if reasons else
                                             "no entry point of that name in the group 'aios'")
    )
