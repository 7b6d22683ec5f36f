"""What the OpenAPI schema says beyond what FastAPI derives from the route signatures.

Every status a route can answer is documented, with the body and headers the handlers really
send (`exception_handlers`, `limits`, `rate_limit`): routes name theirs with `error_responses`,
and `install_openapi` writes the app's own page size into the schema, because `limit`'s maximum
is a setting, not a constant. `tests/service/test_api_conformance.py` holds the schema to the
answers with schemathesis.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import validation_error_definition, validation_error_response_definition

from slimformer.service.schemas import ErrorOut

_VALIDATION_REF = "#/components/schemas/HTTPValidationError"
_RETRY_AFTER = {
    "Retry-After": {
        "description": "whole seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": 'the scheme to use, `Bearer realm="slimformer"` (`error="invalid_token"` for a refused key)',
        "required": True,
        "schema": {"type": "string"},
    }
}
# Default descriptions; a route may say more about its own 404, 409 or 422.
_DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be parsed (not UTF-8 JSON, or a broken multipart form)",
    401: "No API key, or one that is malformed, unknown or revoked",
    404: "No such resource (or not yours)",
    409: "Conflicts with the resource's state",
    413: "The request body (or uploaded file) is over the server's limit",
    422: "The request is invalid; `detail` lists each problem with its location",
    429: "Too many requests for this API key; retry after `Retry-After` seconds",
    503: "The database is unreachable or its schema is not current; retry after `Retry-After` seconds",
}
_HEADERS: dict[int, dict[str, Any]] = {401: _WWW_AUTHENTICATE, 429: _RETRY_AFTER, 503: _RETRY_AFTER}


def error_responses(*statuses: int, described: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for error statuses, each with the body and headers the handlers send.

    Args:
        *statuses: the statuses, e.g. 401, 404.
        described: route-specific descriptions by status (a status given only here is included too).

    Returns:
        A dict for a route's or a router's `responses`: `ErrorOut` for every status but 422,
        FastAPI's `HTTPValidationError` (a list of located problems) for 422.
    """
    described = described or {}
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, *described}):
        entry: dict[str, Any] = {"description": described.get(status, _DESCRIPTIONS[status])}
        if status == 422:
            entry["content"] = {"application/json": {"schema": {"$ref": _VALIDATION_REF}}}
        else:
            entry["model"] = ErrorOut
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        out[status] = entry
    return out


# Every route behind an API key; every route that reads the database.
PROTECTED = error_responses(401, 503)
RETRY_AFTER_HEADER = _RETRY_AFTER


def install_openapi(app: FastAPI, max_page_size: int) -> None:
    """Make `app.openapi()` state the app's page size as the bound of `limit` and of pages' `items`.

    Args:
        app: the app, its routes included.
        max_page_size: the largest `limit` the app accepts (`Settings.max_page_size`).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()  # FastAPI's, cached on the app; tightened in place, once
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # Routes that describe their 422 point at FastAPI's component, which FastAPI itself adds
        # only for routes that leave 422 to it.
        components.setdefault("ValidationError", validation_error_definition)
        components.setdefault("HTTPValidationError", validation_error_response_definition)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "query" and parameter.get("name") == "limit":
                        _set_integer_maximum(parameter["schema"], max_page_size)
        for name, component in components.items():
            if name.startswith("Page_"):
                properties = component.get("properties", {})
                properties.get("items", {})["maxItems"] = max_page_size
                _set_integer_maximum(properties.get("limit", {}), max_page_size)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _set_integer_maximum(schema: dict[str, Any], maximum: int) -> None:
    """Set `maximum` on an integer schema, or on the integer branches of an `anyOf`."""
    if schema.get("type") == "integer":
        schema["maximum"] = maximum
    for branch in schema.get("anyOf", []):
        _set_integer_maximum(branch, maximum)
