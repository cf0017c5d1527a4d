"""Optional resources a pack's commands read (a Debian corpus, a speech synthesiser, a data
set): what `aios doctor` checks, so that a missing one is named before a command fails on it.

A pack reports each from its `aios_diagnostics` hook as ``report("resource", OptionalResource(
...))``; the doctor lists them with the commands they enable and counts a missing one as a
problem, with the command that installs it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OptionalResource"]


@dataclass(frozen=True)
class OptionalResource:
    """One resource outside Python: `available` is checked when the pack reports it."""

    name: str
    available: bool
    enables: tuple[str, ...]  # the commands that need it, e.g. ("aios train text",)
    install: str  # the command that installs it, e.g. "apt-get install fortunes"

    def __str__(self) -> str:
        state = "installed" if self.available else f"MISSING (install: {self.install})"
        return f"{state}; needed by {', '.join(self.enables)}"

    def problem(self) -> str | None:
        """The doctor's line for a missing resource, None when it is there."""
        if self.available:
            return None
        return (f"{self.name} is missing, so {', '.join(self.enables)} cannot run; install it: "
                f"{self.install} (or run `scripts/dev setup` as root)")
