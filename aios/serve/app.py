"""The ASGI app: routes, the error shape, metrics, and the life of the engines.

Starlette rather than a bigger framework: the request models are pydantic, the rest is a few
routes. Every failure answers in OpenAI's error shape; anything unexpected is logged with its
traceback and answered 500 with one line, and the server goes on serving.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aios.registry import Registry, default_registry
from aios.serve.batching import Cancelled, Overloaded
from aios.serve.catalog import ModelCatalog
from aios.serve.errors import ApiError, error_response
from aios.serve.http import authorize, read_model
from aios.serve.media_api import MediaApi
from aios.serve.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from aios.serve.schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageRequest,
    MemoryAddRequest,
    MemorySearchRequest,
    SpeechRequest,
)
from aios.serve.settings import ServeSettings
from aios.serve.text_api import TextApi

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("aios.serve")

Handler = Callable[[Request], Awaitable[Response]]


class _State:
    """What the routes share: settings, catalog, metrics, and whether the engines are up."""

    def __init__(self, settings: ServeSettings, registry: Registry) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.catalog = ModelCatalog(settings, registry, self.metrics)
        self.text = TextApi(self.catalog, settings, self.metrics)
        self.media = MediaApi(self.catalog, settings)
        self.ready = threading.Event()
        self.loaded: list[str] = []
        self.load_error: str | None = None

    def preload(self) -> None:
        try:
            self.loaded = self.catalog.preload()
        except Exception as exc:  # the server still answers; /ready says why it is not
            log.exception("loading the models failed")
            self.load_error = f"{type(exc).__name__}: {exc}"
        else:
            self.ready.set()


def create_app(settings: ServeSettings | None = None, *,
               registry: Registry | None = None) -> Starlette:
    """The server's ASGI app; the engines load in the background when it starts."""
    settings = settings or ServeSettings()
    state = _State(settings, registry or default_registry())

    def api(model: type[Any] | None, call: Callable[..., Awaitable[Response]]) -> Handler:
        async def handler(request: Request) -> Response:
            authorize(request, settings.api_key)
            if model is None:
                return await call(request)
            body = await read_model(request, model, limit=settings.max_body_bytes)
            return await call(request, body)

        return handler

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        if state.ready.is_set():
            return JSONResponse({"ready": True, "models": state.loaded})
        return JSONResponse({"ready": False, "error": state.load_error},
                            status_code=503 if state.load_error is None else 500)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"object": "model", "created": 0, "owned_by": "aios", **entry}
            for entry in state.catalog.available()]})

    async def model(request: Request) -> Response:
        wanted = request.path_params["model"]
        for entry in state.catalog.available():
            if entry["id"] == wanted:
                return JSONResponse({"object": "model", "created": 0, "owned_by": "aios",
                                     **entry})
        raise ApiError(404, f"the model {wanted!r} does not exist; GET /v1/models lists them",
                       param="model", code="model_not_found")

    async def metrics(request: Request) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def playground(request: Request) -> Response:
        page = resources.files("aios.serve").joinpath("static/playground.html").read_text()
        return HTMLResponse(page)

    routes = [
        Route("/", playground),
        Route("/health", health),
        Route("/ready", ready),
        Route("/metrics", metrics),
        Route("/v1/models", api(None, models)),
        Route("/v1/models/{model:path}", api(None, model)),
        Route("/v1/completions", api(CompletionRequest, state.text.respond), methods=["POST"]),
        Route("/v1/chat/completions", api(ChatRequest, state.text.respond), methods=["POST"]),
        Route("/v1/images/generations", api(ImageRequest, state.media.images_generate),
              methods=["POST"]),
        Route("/v1/images/files/{name}", api(None, state.media.image_file), name="image_file"),
        Route("/v1/audio/speech", api(SpeechRequest, state.media.speech), methods=["POST"]),
        Route("/v1/embeddings", api(EmbeddingRequest, state.media.embeddings),
              methods=["POST"]),
        Route("/v1/memory", api(MemoryAddRequest, state.media.memory_add), methods=["POST"]),
        Route("/v1/memory/search", api(MemorySearchRequest, state.media.memory_search),
              methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loader = threading.Thread(target=state.preload, name="aios-preload", daemon=True)
        loader.start()
        try:
            yield
        finally:
            state.catalog.close()

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        ApiError: _api_error,
        HTTPException: _http_error,
        Overloaded: _overloaded,
        Cancelled: _cancelled,
        Exception: _unexpected,
    })
    app.state.aios = state
    app.add_middleware(_Measured, metrics=state.metrics)
    return app


def create_app_from_env() -> Starlette:
    """The app of a `--workers N` worker process: settings come from the environment."""
    return create_app(ServeSettings.from_env())


# -- errors ------------------------------------------------------------------------------------


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no such endpoint: {request.method} {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(
                   exc.status_code, str(exc.detail))
    return error_response(ApiError(exc.status_code, message))


async def _overloaded(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Overloaded)
    return error_response(ApiError(429, f"{exc}; the queue is full",
                                   code="rate_limit_exceeded",
                                   headers={"Retry-After": str(exc.retry_after)}))


async def _cancelled(request: Request, exc: Exception) -> Response:
    return Response(status_code=499)  # nobody is listening any more


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("request %s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(ApiError(500, f"the server failed on this request "
                                        f"({type(exc).__name__}: {exc}); it keeps serving",
                                   code="internal_error"))


# -- metrics of every request ------------------------------------------------------------------


#: The paths counted by name in the metrics.
_ENDPOINTS = frozenset({"/", "/health", "/ready", "/metrics", "/v1/models", "/v1/completions",
                        "/v1/chat/completions", "/v1/images/generations", "/v1/audio/speech",
                        "/v1/embeddings", "/v1/memory", "/v1/memory/search"})


class _Measured:
    """Counts each request by endpoint and status, and times it to its last byte."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/v1/images/files/"):
            endpoint = "/v1/images/files"
        elif path.startswith("/v1/models/"):
            endpoint = "/v1/models/{id}"
        else:  # one label per route, however many paths clients make up
            endpoint = path if path in _ENDPOINTS else "other"
        status = {"code": 500}
        started = time.monotonic()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.monotonic() - started)
