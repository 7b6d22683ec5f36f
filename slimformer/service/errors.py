"""Errors of the service layer, all under the project's one root `SlimformerError`.

`slimformer.service.exception_handlers` maps each to an HTTP status; code outside HTTP (the CLI,
the worker loop) catches them like any other slimformer error. The store's errors (not found,
conflict, database unavailable, schema out of date) live in `slimformer.store.errors` and are
re-exported here, so the HTTP layer names every error it answers from one place.
"""

from __future__ import annotations

from typing import Any

from slimformer.errors import SlimformerError
from slimformer.store.errors import BadCursor, Conflict, DatabaseUnavailable, NotFound, SchemaOutOfDate

__all__ = [
    "BadCursor", "Conflict", "DatabaseUnavailable", "InvalidRequest", "NotFound", "PayloadTooLarge", "RateLimited",
    "SchemaOutOfDate", "Unauthorized",
]


class Unauthorized(SlimformerError):
    """Missing, malformed, unknown or revoked API key (401)."""


class PayloadTooLarge(SlimformerError):
    """A request body or upload over its size limit (413)."""


class RateLimited(SlimformerError):
    """An API key over its request rate (429).

    Attributes:
        retry_after: whole seconds until a request would be accepted again (`Retry-After`).
    """

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class InvalidRequest(SlimformerError, ValueError):
    """A request that is well-formed but names things that do not exist or cannot work (422).

    Attributes:
        errors: FastAPI-style error items, `{"loc": [...], "msg": ..., "type": ..., "ctx": {...}}`,
            so clients parse one shape for schema errors and for these.
    """

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__("; ".join(str(e["msg"]) for e in errors))
        self.errors = errors

    @classmethod
    def at(cls, loc: list[str | int], msg: str, type_: str, **ctx: Any) -> InvalidRequest:
        """One error at one location.

        Args:
            loc: where, e.g. ["body", "teacher"].
            msg: what is wrong, for people.
            type_: what is wrong, for programs (e.g. "unknown_teacher").
            **ctx: extra facts for programs (e.g. valid=[...]).
        """
        item: dict[str, Any] = {"loc": loc, "msg": msg, "type": type_}
        if ctx:
            item["ctx"] = ctx
        return cls([item])
