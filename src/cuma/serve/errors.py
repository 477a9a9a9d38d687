"""OpenAI's error JSON, ``{"error": {"message", "type", "param", "code"}}``, for every failure.

The official clients map the status code to an exception class (400 ``BadRequestError``, 404
``NotFoundError``, 429 ``RateLimitError``, ...) and show ``message``, so every error names what was wrong.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("cuma.serve")

ERROR_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class APIError(Exception):
    """An error answered as OpenAI's error JSON with ``status``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, dict[str, str | None]]:
        kind = ERROR_TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 for a request the server cannot serve as written."""
    return APIError(400, message, param=param, code=code)


def validation_error(exc: RequestValidationError) -> APIError:
    """The first pydantic problem as a 400 naming the parameter (bad JSON included)."""
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", first.get("msg"))
        return invalid(f"the request body is not valid JSON: {detail}", code="invalid_json")
    param = ".".join(loc) or None
    where = f"{param}: " if param else ""
    value = f" (got {_short(first['input'])})" if "input" in first and loc else ""
    return invalid(f"{where}{first.get('msg', 'invalid value')}{value}", param=param)


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation errors, HTTP errors and crashes in OpenAI's format instead of FastAPI's."""

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return APIError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return APIError(500, f"internal error: {type(exc).__name__}: {exc}").response()


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
