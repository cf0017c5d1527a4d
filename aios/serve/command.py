"""`aios serve`: the command that starts the server (uvicorn).

Kept free of the server's own imports until it runs, so `aios --help` works where the `serve`
extra (starlette, uvicorn, prometheus-client) is not installed; `aios serve` then says what to
install.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from aios.errors import AiosError, ConfigError

__all__ = ["add_serve_command"]

#: What the server needs beyond the core (the `serve` extra of aios).
SERVE_MODULES = ("starlette", "uvicorn", "prometheus_client")


class MissingExtraError(AiosError):
    """The `serve` extra is not installed (a usage problem: exit code 2)."""

    exit_code = 2


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    """Register `aios serve` on the top-level subcommand parser."""
    serve = commands.add_parser(
        "serve", help="serve the models over HTTP: an OpenAI-compatible API and a playground")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="YAML config file (the same as aios's global --config)")
    serve.add_argument("--api-key", metavar="KEY",
                       help="require `Authorization: Bearer KEY` on /v1 (default: "
                            "$AIOS_API_KEY, else none)")
    serve.add_argument("--memory", metavar="DIR",
                       help="the memory store for `memory: true`, /v1/memory and write-back "
                            "(created when new)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes (default 1); with N > 1 they share the memory "
                            "store read-only")
    serve.add_argument("--max-batch", type=int, default=32, metavar="N",
                       help="text generations that run (and batch) together (default 32)")
    serve.add_argument("--max-queue", type=int, default=64, metavar="N",
                       help="requests that may wait for a slot; more are answered 429 "
                            "(default 64)")
    serve.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                       help="time limit of one request (default 120)")
    serve.add_argument("--max-body", type=int, default=1_000_000, metavar="BYTES",
                       help="largest request body accepted; larger ones get 413 (default 1 MB)")
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    missing = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"`aios serve` needs {', '.join(missing)}; install them with "
                                "pip install 'aios[serve]'")
    bounds = (("--workers", args.workers, 1), ("--max-batch", args.max_batch, 1),
              ("--max-queue", args.max_queue, 0), ("--max-body", args.max_body, 1))
    for flag, value, least in bounds:
        if value < least:
            raise ConfigError(flag, flag.lstrip("-"), f"{flag} must be at least {least}",
                              f"give {flag} {max(least, 1)} or more")
    if args.timeout <= 0:
        raise ConfigError("--timeout", "timeout", "--timeout must be positive",
                          "give the seconds one request may take, e.g. --timeout 60")
    shared = args.memory is not None and args.workers > 1
    if shared and not Path(args.memory).expanduser().is_dir():
        raise ConfigError("--memory", "memory.path", f"no memory store at {args.memory}",
                          f"workers share a store read-only: fill it first with "
                          f"aios memory add --path {args.memory} FILE_OR_DIR...")
    import uvicorn

    from aios.serve.settings import SETTINGS_ENV, ServeSettings

    settings = ServeSettings(
        host=args.host, port=args.port, config=args.config, overrides=tuple(args.overrides),
        api_key=args.api_key or os.environ.get("AIOS_API_KEY") or None, memory=args.memory,
        workers=args.workers, max_active=args.max_batch, max_queue=args.max_queue,
        timeout_s=args.timeout, max_body_bytes=args.max_body,
        read_only_memory=args.workers > 1)
    # Fail here, with one line, on a bad config rather than in every worker.
    from aios.config import load_config
    from aios.registry import default_registry

    load_config(settings.config, settings.overrides, default_registry())
    print(f"aios serve: http://{args.host}:{args.port}/ (playground), /v1 (OpenAI API), "
          f"{args.workers} worker(s)", flush=True)
    if args.workers == 1:
        from aios.serve.app import create_app

        uvicorn.run(create_app(settings), host=args.host, port=args.port,
                    log_level=args.log_level)
    else:
        os.environ[SETTINGS_ENV] = settings.to_env()
        uvicorn.run("aios.serve.app:create_app_from_env", factory=True, host=args.host,
                    port=args.port, workers=args.workers, log_level=args.log_level)
    return 0
