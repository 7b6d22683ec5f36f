"""Pages of a list, by offset or by an opaque cursor (keyset pagination).

A cursor names the row a page ended on, by the values of the list's sort keys (the last one is
always the id, so the order is total). The next page is "the rows after that row", not "skip N
rows", so a row inserted or deleted while a client walks the pages moves nothing: every row that
was there throughout is seen exactly once. Rows inserted meanwhile come before the cursor (newest
first lists: not seen) or after it (seen once).

A cursor is base64url JSON: a digest of the list it belongs to (resource, tenant or job,
filters, sort) and the last row's key values. It is not signed: a forged one can only move a
page within the caller's own list, and its values are checked before any reaches SQL, so a
malformed or foreign cursor is a `BadCursor` (422), never a database error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from slimformer.store.errors import BadCursor

T = TypeVar("T")

CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 512  # the longest cursor this module makes is well under it (two keys, one scope)
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
_MAX_TEXT = 64  # ids are 26 characters
_INT_RANGE = (-(2**63), 2**63 - 1)  # PostgreSQL's BIGINT


@dataclass(frozen=True)
class SortKey:
    """One key of a list's order.

    Attributes:
        column: the mapped column (its Python type says how the cursor encodes values).
        descending: sort high to low.
        nullable: the column can be NULL; NULLs sort last in either direction.
    """

    column: InstrumentedAttribute[Any]
    descending: bool = False
    nullable: bool = False

    @property
    def name(self) -> str:
        return self.column.key

    def order_by(self) -> ColumnElement[Any]:
        order = self.column.desc() if self.descending else self.column.asc()
        return order.nulls_last() if self.nullable else order


@dataclass(frozen=True)
class Slice(Generic[T]):
    """A page of rows.

    Attributes:
        rows: at most `limit` rows.
        total: how many rows the list has in all (the cursor does not narrow it).
        next_cursor: the cursor of the page after this one; None when this page is the last.
    """

    rows: list[T]
    total: int
    next_cursor: str | None


def fetch_page(
    session: Session,
    query: Select[Any],
    keys: Sequence[SortKey],
    scope: str,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
) -> Slice[Any]:
    """One page of `query` in the order of `keys`: after `cursor` if given, else after `offset` rows.

    Args:
        session: an open session.
        query: `select(Model).where(...)`: the whole list, unordered.
        keys: the order; the last key must be unique (the id), so the order is total.
        scope: names the list (resource, owner, filters, sort): a cursor of another scope is refused.
        limit: page size.
        offset: rows to skip (only without a cursor).
        cursor: the `next_cursor` of the page before.

    Returns:
        The page, the list's total and the next page's cursor.

    Raises:
        BadCursor: a cursor that is malformed or belongs to another list.
    """
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    if cursor is not None:
        query = query.where(_after(keys, decode_cursor(cursor, scope, keys)))
    else:
        query = query.offset(offset)
    rows = list(session.scalars(query.order_by(*(k.order_by() for k in keys)).limit(limit + 1)))
    if len(rows) <= limit:
        return Slice(rows=rows, total=total, next_cursor=None)
    rows = rows[:limit]
    return Slice(rows=rows, total=total, next_cursor=encode_cursor(scope, [getattr(rows[-1], k.name) for k in keys]))


def encode_cursor(scope: str, values: Sequence[Any]) -> str:
    """The cursor of the row with these key values, in the list named by `scope`."""
    doc = {"v": CURSOR_VERSION, "s": _digest(scope), "k": [_encode(v) for v in values]}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, scope: str, keys: Sequence[SortKey]) -> list[Any]:
    """The key values a cursor holds, checked against the list's keys.

    Raises:
        BadCursor: not a cursor this module made, one of another list, or values of the wrong type.
    """
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise BadCursor(f"cursor is over {MAX_CURSOR_LENGTH} characters; pass a next_cursor the server returned")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise BadCursor("malformed cursor; pass a next_cursor the server returned") from None
    if not isinstance(doc, dict) or doc.get("v") != CURSOR_VERSION or not isinstance(doc.get("k"), list):
        raise BadCursor("malformed cursor; pass a next_cursor the server returned")
    if doc.get("s") != _digest(scope):
        raise BadCursor(
            "cursor belongs to another list (another resource, job, filter or sort); "
            "start again without a cursor, or keep the filters and sort the cursor was made with"
        )
    values = doc["k"]
    if len(values) != len(keys):
        raise BadCursor("malformed cursor; pass a next_cursor the server returned")
    return [_decode(value, key) for value, key in zip(values, keys, strict=True)]


def _digest(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def _encode(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _decode(value: Any, key: SortKey) -> Any:
    bad = BadCursor(f"malformed cursor (bad {key.name}); pass a next_cursor the server returned")
    if value is None:
        if not key.nullable:
            raise bad
        return None
    column_type = key.column.type
    kind = getattr(column_type, "impl_instance", column_type).python_type  # a TypeDecorator's own is `object`
    if kind is datetime:
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= _MAX_TEXT else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise bad
        return parsed
    if isinstance(value, bool):
        raise bad
    if kind is float and isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if kind is int and isinstance(value, int) and _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        return value
    if kind is str and isinstance(value, str) and len(value) <= _MAX_TEXT and "\x00" not in value:
        return value
    raise bad


def _after(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after the row with these key values, in the order of `keys` (NULLs last)."""
    if not keys:
        return false()
    key, value, rest = keys[0], values[0], keys[1:]
    column = key.column
    if value is None:  # among the NULLs, which sort last: only later NULLs follow
        return and_(column.is_(None), _after(rest, values[1:]))
    beyond = column < value if key.descending else column > value
    clauses = [beyond]
    if rest:
        clauses.append(and_(column == value, _after(rest, values[1:])))
    if key.nullable:
        clauses.append(column.is_(None))
    return or_(*clauses)
