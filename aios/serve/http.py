"""Reading requests and writing events: the HTTP details every endpoint shares.

Bodies are read with a size limit (413 past it, counted as they arrive, so a client that lies
about its Content-Length is stopped too), parsed as JSON (400 when it is not) and validated by
a pydantic model (422 naming the field). The API key, when the server has one, is checked
before anything else is read (401).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from aios.serve.errors import ApiError

__all__ = ["authorize", "read_model", "sse", "watch_disconnect"]

Body = TypeVar("Body", bound=BaseModel)


def authorize(request: Request, api_key: str | None) -> None:
    """401 unless the request carries `Authorization: Bearer KEY` (when a key is set)."""
    if api_key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             api_key.encode()):
        raise ApiError(401, "invalid or missing API key; send `Authorization: Bearer KEY` with "
                            "the key the server was started with (--api-key)",
                       code="invalid_api_key")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is {int(declared)} bytes, more than the "
                            f"server's limit of {limit}; send less (a shorter prompt)",
                       code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is more than the server's limit of {limit} "
                                "bytes; send less (a shorter prompt)", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_model(request: Request, model: type[Body], *, limit: int) -> Body:
    """The request body as `model`, or the `ApiError` that says what is wrong with it."""
    raw = await read_body(request, limit)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc}); send a JSON object",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = first["msg"]
        if first["type"] == "missing":
            message = f"the field {param!r} is required"
        else:
            message = f"{param}: {message}" if param else message
        raise ApiError(422, message, param=param, code="invalid_value") from None


def sse(data: Any) -> bytes:
    """One server-sent event carrying JSON (or the literal `[DONE]`)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def watch_disconnect(request: Request, on_disconnect: Callable[[], Any]) -> asyncio.Task[None]:
    """A task that calls `on_disconnect` when the client goes away (cancel it when done).

    Starlette does not tell a running handler that its client left; the ASGI server does, by
    an `http.disconnect` message on `receive` (after the body has been read)."""

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                result = on_disconnect()
                if isinstance(result, Awaitable):
                    await result
                return

    return asyncio.create_task(watch())
