"""What `aios serve` is started with, in one object that can travel to worker processes.

With `--workers N` uvicorn starts each worker by importing the app factory, so the settings go
through the environment (`AIOS_SERVE_SETTINGS`, JSON) rather than through arguments.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

__all__ = ["SETTINGS_ENV", "ServeSettings"]

SETTINGS_ENV = "AIOS_SERVE_SETTINGS"


@dataclass(frozen=True)
class ServeSettings:
    """Server options. `max_active` generations of one model run (and batch) together, at most
    `max_queue` more wait; `timeout_s` bounds each request; `max_body_bytes` each request body.
    `read_only_memory` opens the memory store read-only (every worker of `--workers N` > 1)."""

    host: str = "127.0.0.1"
    port: int = 8000
    config: str | None = None
    overrides: tuple[str, ...] = ()
    api_key: str | None = None
    memory: str | None = None
    workers: int = 1
    max_active: int = 32
    max_queue: int = 64
    timeout_s: float = 120.0
    max_body_bytes: int = 1_000_000
    gather_s: float = 0.02
    read_only_memory: bool = False
    preload: tuple[str, ...] = field(default=("text", "image", "audio", "embedding"))

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeSettings:
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            return cls()
        data = json.loads(raw)
        for key in ("overrides", "preload"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)
