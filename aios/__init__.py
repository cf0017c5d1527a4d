"""aios: unified diffusion generation with swappable heads, samplers, memory and quantizers."""

from aios import _moved
from aios.config import Config, load_config
from aios.engine import ArrowEngine
from aios.errors import (
    AiosError,
    ConfigError,
    IncompatiblePluginError,
    PluginError,
    PluginNotFoundError,
)
from aios.hookspecs import CONTRACT_VERSION, hookimpl
from aios.memory import open_memory
from aios.protocols import GenerationRequest
from aios.registry import Registry, default_registry

__version__ = "0.1.0"

_moved.install()

__all__ = [
    "CONTRACT_VERSION",
    "AiosError",
    "ArrowEngine",
    "Config",
    "ConfigError",
    "GenerationRequest",
    "IncompatiblePluginError",
    "PluginError",
    "PluginNotFoundError",
    "Registry",
    "__version__",
    "default_registry",
    "hookimpl",
    "load_config",
    "open_memory",
]
