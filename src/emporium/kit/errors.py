"""Domain errors carry their HTTP status; one set of handlers renders every error."""

from __future__ import annotations

from typing import Any, ClassVar

import asyncpg
import structlog
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from emporium.kit.schemas import error_message

log = structlog.get_logger(__name__)


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class AppError(Exception):
    """Base for errors the client can act on. ``code`` is machine-readable."""

    status_code: ClassVar[int] = status.HTTP_400_BAD_REQUEST
    code: ClassVar[str] = "bad_request"

    def __init__(self, detail: Any = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        # Extra top-level fields a client can act on, e.g. {"available": 3}.
        self.extra = extra

    @classmethod
    def responses(cls) -> dict[int | str, dict[str, Any]]:
        return {cls.status_code: {"model": ErrorBody, "description": cls.code}}


class NotFound(AppError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Unauthorized(AppError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "unauthorized"


class Forbidden(AppError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class Conflict(AppError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class InvalidInput(AppError):
    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    code = "invalid_input"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",)) or "body"


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
    if "retry_after" in exc.extra:
        headers["Retry-After"] = str(exc.extra["retry_after"])
    return JSONResponse(
        {"error": exc.code, "detail": exc.detail, **exc.extra},
        status_code=exc.status_code,
        headers=headers,
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    code = (
        "malformed_json"
        if any(e.get("type") == "json_invalid" for e in errors)
        else ("invalid_input")
    )
    detail = [
        {
            # A JSON syntax error's location is a character offset, not a field.
            "field": "body" if e.get("type") == "json_invalid" else _loc(tuple(e.get("loc", ()))),
            "message": error_message(e),
            "type": e.get("type"),
        }
        for e in errors
    ]
    return JSONResponse({"error": code, "detail": detail}, status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": code, "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
    )


def _unavailable() -> JSONResponse:
    return JSONResponse(
        {"error": "database_unavailable", "detail": "the database is unavailable; try again"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            log.warning("request.database_disconnected", error=str(exc.orig))
            return _unavailable()
        orig: Any = exc.orig
    else:
        orig = exc
    if isinstance(orig, (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError)):
        log.warning("request.database_disconnected", error=str(orig))
        return _unavailable()
    sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", "") or "")
    # Class 53 is "insufficient resources" (too many connections, out of memory or disk);
    # 57P01-57P03: the server is shutting down or starting. The request may succeed later.
    if sqlstate.startswith("53") or sqlstate in ("57P01", "57P02", "57P03"):
        log.warning("request.database_unavailable", sqlstate=sqlstate, error=str(orig))
        return _unavailable()
    # Class 22 is "data exception": a value the database cannot store or compare.
    if sqlstate.startswith("22"):
        log.warning("request.data_exception", sqlstate=sqlstate, error=str(orig))
        return JSONResponse(
            {"error": "invalid_input", "detail": "a value could not be stored or compared"},
            status_code=422,
        )
    return await _unhandled(request, exc)


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    log.exception("request.unhandled_error", exc_info=exc)
    return JSONResponse({"error": "internal_error", "detail": None}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    # The hot paths talk to asyncpg directly (emporium.kit.sql).
    app.add_exception_handler(asyncpg.PostgresError, _database_error)
    app.add_exception_handler(asyncpg.InterfaceError, _database_error)
    app.add_exception_handler(Exception, _unhandled)
