"""Errors of the service layer, all under the project's one root `SlimformerError`.

`slimformer.service.exception_handlers` maps each to an HTTP status; code outside HTTP (the CLI,
the worker loop) catches them like any other slimformer error.
"""

from __future__ import annotations

from typing import Any

from slimformer.errors import SlimformerError


class DatabaseUnavailable(SlimformerError):
    """The database cannot be reached or refused the connection. Answered with 503."""


class SchemaOutOfDate(SlimformerError):
    """The database schema is not the one this slimformer needs. The message says what to run."""


class NotFound(SlimformerError, LookupError):
    """No such resource for this tenant: missing and not-yours read the same (404)."""

    def __str__(self) -> str:  # LookupError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class Conflict(SlimformerError):
    """The request does not fit the resource's current state (409), e.g. cancelling a finished job."""


class Unauthorized(SlimformerError):
    """Missing, malformed, unknown or revoked API key (401)."""


class PayloadTooLarge(SlimformerError):
    """A request body or upload over its size limit (413)."""


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
