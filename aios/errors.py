"""Exceptions of the aios core.

Every error a user can cause carries the fix in its message, and maps to a process exit code so
that scripts can tell a usage mistake (2) from a failure at run time (1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AiosError(Exception):
    """Base of every error aios raises on purpose; `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(AiosError):
    """A configuration value is wrong: the message names where (file and key path) and the fix."""

    exit_code = 2

    def __init__(self, source: str, key_path: str, problem: str, fix: str) -> None:
        self.source = source
        self.key_path = key_path
        self.problem = problem
        self.fix = fix
        super().__init__(f"{source}: {key_path}: {problem}; {fix}")


class UsageError(AiosError, ValueError):
    """A request the user can fix: an option that does not apply, a number out of range, a
    missing input file. Exit code 2; the message names the problem and the fix."""

    exit_code = 2


class PluginNotFoundError(AiosError):
    """No plugin of a kind is registered under a name (or none at all for `auto`).

    `reason` says why the name is missing when the registry knows (a skipped plugin offers it).
    """

    exit_code = 2

    def __init__(self, kind: str, name: str, available: Iterable[str], hint: str = "",
                 reason: str = "") -> None:
        self.kind = kind
        self.name = name
        self.reason = reason
        self.available = sorted(available)
        self.suggestions = suggest(name, self.available)
        message = f"unknown {kind} {name!r}"
        if self.suggestions:
            message += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        if self.available:
            message += f" Installed {kind}s: {', '.join(self.available)}."
        else:
            message = f"no {kind} plugin is installed"
        if hint and not self.available:
            message += f". {hint}"
        if reason:
            message += f"{'' if message.endswith('.') else ';'} {reason}"
        super().__init__(message)


class PluginError(AiosError):
    """Plugin code raised at run time: the message names the object, its package and the error
    (the original exception is the ``__cause__``, shown with ``--debug``)."""

    def __init__(self, origin: str, error: BaseException) -> None:
        self.origin = origin
        super().__init__(f"{origin} raised {type(error).__name__}: {error}")


#: The attribute under which the engine records which plugin object raised an exception.
ORIGIN_ATTRIBUTE = "aios_origin"


def blame(error: BaseException, origin: str) -> None:
    """Record on `error` which plugin object raised it ("sampler 'x' from package y 1.0"),
    keeping its type so Python callers can still catch it; the innermost call wins (a head's
    error raised through a sampler's loop is the head's). The CLI reports it as a
    `PluginError`."""
    if getattr(error, ORIGIN_ATTRIBUTE, None) is None:
        try:
            setattr(error, ORIGIN_ATTRIBUTE, origin)
        except AttributeError:  # an exception type with __slots__: nothing to record on
            return
        if hasattr(error, "add_note"):
            error.add_note(f"raised by {origin}")


def blamed(error: BaseException) -> PluginError | None:
    """The `PluginError` to report for an exception a plugin raised, or None if none did."""
    origin = getattr(error, ORIGIN_ATTRIBUTE, None)
    return PluginError(origin, error) if isinstance(origin, str) else None


class IncompatiblePluginError(AiosError):
    """A plugin implements a version of the plugin contract this core cannot use."""


def suggest(word: str, candidates: Iterable[str]) -> list[str]:
    """The closest candidates to a misspelt word, best first (for "did you mean" hints)."""
    return difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)


class QuantizationError(AiosError):
    """A tensor or an option cannot be quantized: the message names the tensor and the fix."""

    exit_code = 2


class WeightFileError(AiosError):
    """A weight file cannot be read or written (truncated, corrupt, newer format, bad tensor)."""


class NothingToAdaptError(AiosError):
    """`aios evolve` found no text to adapt to (none given, or none the model is unsure of)."""
