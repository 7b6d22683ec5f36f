"""Errors the store raises, all under the project's one root `SlimformerError`.

They say what went wrong in database terms; `slimformer.service.exception_handlers` maps each to
an HTTP status, and code outside HTTP (the CLI, the worker loop) catches them like any other
slimformer error.
"""

from __future__ import annotations

from slimformer.errors import SlimformerError


class DatabaseUnavailable(SlimformerError):
    """The database cannot be reached or refused the connection. Answered with 503."""


class SchemaOutOfDate(SlimformerError):
    """The database schema is not the one this slimformer needs. The message says what to run."""


class NotFound(SlimformerError, LookupError):
    """No such row for this tenant: missing and not-yours read the same (404)."""

    def __str__(self) -> str:  # LookupError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class Conflict(SlimformerError):
    """The change does not fit the row's current state (409), e.g. cancelling a finished job."""


class BadCursor(SlimformerError, ValueError):
    """A page cursor that is malformed or belongs to another list (422)."""
