"""The `aios` command: one module per command group (`app` holds the parser and the core
commands; `evolve`, `memory`, `quantize` and `media` add theirs). The CLI may import any wing.
"""

from aios.cli.app import main

__all__ = ["main"]
