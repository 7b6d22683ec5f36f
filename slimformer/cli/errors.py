"""The one place that turns a user's mistake into `error: <one line>` and exit code 2.

A person who typed a bad spec, a wrong key or a server that is not running needs the reason, not
a traceback; a traceback is kept for what is a bug in slimformer (any exception not named here).
Commands raise (or let through) the errors below and never print them themselves, so every
command words its failures the same way.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from slimformer.errors import SlimformerError

__all__ = ["USAGE_ERROR", "UserError", "about", "describe", "run_reporting", "validation_summary"]

USAGE_ERROR = 2  # what argparse exits with for a bad flag: one exit code for every mistake of the user's
INTERRUPTED = 130


class UserError(SlimformerError):
    """Something the user gave (a file, a flag, a value) cannot be used; the message says what."""


@contextmanager
def about(source: Path | str) -> Iterator[None]:
    """Name the file `source` in any error raised while reading or validating it.

    So a bad spec reads `spec.json: search.trials: Input should be greater than or equal to 1`
    instead of a pydantic traceback.
    """
    try:
        yield
    except ValidationError as exc:
        raise UserError(f"{source}: {validation_summary(exc)}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{source}: not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{source}: not a text file") from None
    except OSError as exc:
        raise UserError(f"{source}: {_os_reason(exc)}") from None


def validation_summary(exc: ValidationError) -> str:
    """'search.trials: Input should be ...; budgets.latency_ms: ...' (every error, one line)."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{loc}: {error['msg']}" if loc else error["msg"])
    return "; ".join(parts) or str(exc)


def describe(exc: BaseException) -> str | None:
    """The one-line message for a user's error, or None for anything else (a bug: keep its traceback)."""
    if isinstance(exc, SlimformerError):
        return str(exc)
    if isinstance(exc, ValidationError):
        return validation_summary(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc}"
    if isinstance(exc, OSError):
        return f"{exc.filename}: {_os_reason(exc)}" if exc.filename else _os_reason(exc)
    if _is_database_error(exc):
        return f"database: {getattr(exc, 'orig', None) or exc}"
    return None


def run_reporting(command: Callable[[Any], int], args: Any) -> int:
    """Run `command(args)`; a user's error becomes `error: ...` on stderr and exit code 2."""
    try:
        return command(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        message = describe(exc)
        if message is None:
            raise
        print(f"error: {one_line(message)}", file=sys.stderr)
        return USAGE_ERROR


def one_line(message: str) -> str:
    """Join a message's lines, so the error is exactly one line however it was worded."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip()) or "unknown error"


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    return (exc.strerror or str(exc)).lower()


def _is_database_error(exc: BaseException) -> bool:
    # Only when SQLAlchemy is loaded already: the client commands must not import it to find out.
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is None:
        return False
    return isinstance(exc, sqlalchemy_exc.OperationalError | sqlalchemy_exc.ArgumentError)
