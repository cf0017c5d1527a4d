"""A real server on 127.0.0.1 for the tests: uvicorn in a thread, on a free port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

pytest.importorskip("starlette", reason="the `serve` extra is not installed")
pytest.importorskip("uvicorn", reason="the `serve` extra is not installed")

import uvicorn
from starlette.applications import Starlette

from aios.serve.app import create_app
from aios.serve.settings import ServeSettings

#: Quick to start: only the text model loads at start (the rest on first use).
BASE = ServeSettings(timeout_s=60.0, preload=("text",), gather_s=0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(settings: ServeSettings) -> Iterator[tuple[str, Starlette]]:
    """Serve `create_app(settings)` until the block ends; yields the base URL and the app."""
    port = free_port()
    settings = replace(settings, host="127.0.0.1", port=port)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    else:
        server.should_exit = True
        raise RuntimeError("the test server did not become ready in 120 s")
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="package")
def server() -> Iterator[str]:
    """One shared server with the default settings (text loaded at start)."""
    with running(BASE) as (url, _app):
        yield url
