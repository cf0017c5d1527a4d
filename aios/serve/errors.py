"""Errors as the OpenAI API gives them: `{"error": {"message", "type", "param", "code"}}`.

Clients written for OpenAI (its Python client raises `BadRequestError`, `RateLimitError`, ...
from the status code) then handle aios's errors without special cases. A message is one line
that names the problem and the fix; a traceback never reaches a client (the server logs it).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

__all__ = ["ERROR_TYPES", "ApiError", "error_response"]

#: The OpenAI error `type` of each status code aios answers with.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """An error to answer with: status, a one-line message, and the offending parameter."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message,
                          "type": ERROR_TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)
