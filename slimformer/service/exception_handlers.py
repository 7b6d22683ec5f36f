"""How errors become HTTP answers: one table from error class to status, one handler.

Bodies keep FastAPI's shape: `{"detail": "message"}`, or for every 422 `{"detail": [{"loc", "msg",
"type", "ctx"}]}`, the same list a schema validation error gives (the OpenAPI schema promises both:
`schemas.ErrorOut` and FastAPI's `HTTPValidationError`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from slimformer.errors import ArchError, DataError, InfeasibleBudgetError, SlimformerError, TeacherError
from slimformer.service.errors import (
    BadCursor,
    Conflict,
    DatabaseUnavailable,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SchemaOutOfDate,
    Unauthorized,
)
from slimformer.store.db import is_unavailable, unavailable_error

log = logging.getLogger(__name__)

# First match wins, so subclasses come before their bases.
STATUS_BY_ERROR: tuple[tuple[type[SlimformerError], int], ...] = (
    (Unauthorized, 401),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (RateLimited, 429),
    (InvalidRequest, 422),
    (BadCursor, 422),
    (InfeasibleBudgetError, 422),
    (DataError, 422),
    (TeacherError, 422),
    (ArchError, 422),
    (DatabaseUnavailable, 503),
    (SchemaOutOfDate, 503),
)
RETRY_AFTER_SECONDS = 5


def status_for(exc: SlimformerError) -> int:
    """The HTTP status of a slimformer error; 500 for one no request could have caused."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_detail(exc: SlimformerError) -> Any:
    """The `detail` of the answer: the message, or FastAPI-style error items for request problems."""
    if isinstance(exc, InvalidRequest):
        return exc.errors
    if isinstance(exc, InfeasibleBudgetError):
        return [{"loc": ["body", "budgets"], "msg": str(exc), "type": "budget_infeasible",
                 "ctx": {"smallest": exc.smallest}}]
    if isinstance(exc, BadCursor):
        return [{"loc": ["query", "cursor"], "msg": str(exc), "type": "invalid_cursor"}]
    if isinstance(exc, DataError):
        return [{"loc": ["body", "file"], "msg": str(exc), "type": "invalid_data"}]
    if status_for(exc) == 422:
        # Any other 422 (a teacher or architecture problem) keeps the list shape the schema documents.
        return [{"loc": ["body"], "msg": str(exc), "type": type(exc).__name__}]
    return str(exc)


def slimformer_error_response(exc: SlimformerError) -> JSONResponse:
    """The JSON answer for a slimformer error, with the headers its status calls for."""
    status = status_for(exc)
    headers: dict[str, str] = {}
    if status == 401:
        # RFC 6750: say which scheme to use, and that a presented key was refused.
        headers["WWW-Authenticate"] = 'Bearer realm="slimformer"'
        if "invalid" in str(exc):
            headers["WWW-Authenticate"] += ', error="invalid_token"'
    elif status == 429:
        assert isinstance(exc, RateLimited)
        headers["Retry-After"] = str(exc.retry_after)
    elif status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if status == 500:
        log.error("unmapped slimformer error: %s", exc, exc_info=exc)
    return JSONResponse({"detail": error_detail(exc)}, status_code=status, headers=headers)


async def _handle_slimformer_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SlimformerError)
    return slimformer_error_response(exc)


async def _handle_sqlalchemy_error(_request: Request, exc: Exception) -> JSONResponse:
    # Safety net for a driver error raised outside `session_scope` (which maps them itself).
    if is_unavailable(exc):
        return slimformer_error_response(unavailable_error(exc))
    if isinstance(exc, sa_exc.DataError) and "NUL" in str(exc.orig):
        # PostgreSQL refuses NUL in text. Requests are checked for it (the spec's texts, ids looked
        # up, upload names); should a value slip past, it is still the request's fault, not ours.
        log.warning("a request value with NUL reached PostgreSQL: %s", exc.statement)
        return JSONResponse({"detail": [{"loc": ["body"], "msg": "text should not contain NUL (\\x00) characters",
                                         "type": "string_nul"}]}, status_code=422)
    log.error("database error", exc_info=exc)
    return JSONResponse({"detail": "internal database error"}, status_code=500)


async def _handle_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler echoes the offending input, and an input of inf or NaN (which Python's
    # JSON reader accepts) cannot be written back as JSON: it would turn a 422 into a 500.
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        # Starlette's `Allow` names only the methods of the first route on the path, but GET and POST
        # of one path are separate routes here (/v1/jobs, /v1/datasets): name those of every route.
        allowed = sorted({method for route in _flat_routes(request.app)
                          if route.matches(request.scope)[0] != Match.NONE for method in getattr(route, "methods", ())})
        if allowed:
            exc = StarletteHTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(allowed)})
    return await http_exception_handler(request, exc)


def _flat_routes(app: FastAPI) -> list[Any]:
    # FastAPI >= 0.16x keeps included routers as nodes of their own; older ones list the routes flat.
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(iter_route_contexts(app.routes)) if iter_route_contexts else list(app.routes)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def install_exception_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(SlimformerError, _handle_slimformer_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(SQLAlchemyError, _handle_sqlalchemy_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
