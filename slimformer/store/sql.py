"""Statement helpers the repositories share: ORM-free bulk updates, the dialect's upsert, ids that name nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

# Bulk UPDATEs here name rows by WHERE, not by loaded objects: there is nothing in the session to
# synchronise, and the callers re-read what they need.
NO_SYNC: dict[str, Any] = {"synchronize_session": False}


def is_sqlite(session: Session) -> bool:
    """Whether the session is bound to SQLite (else PostgreSQL)."""
    return session.get_bind().dialect.name == "sqlite"


def dialect_insert(session: Session) -> Any:
    """The `insert` of the session's dialect, which has `on_conflict_do_update`.

    ON CONFLICT is dialect-specific syntax; both supported databases have it.
    """
    if is_sqlite(session):
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert


def names_nothing(key: str) -> bool:
    """Whether a looked-up id or name cannot be in any row, so the lookup can answer "none" unasked.

    PostgreSQL refuses text with a NUL character outright (the query fails), while SQLite just
    finds nothing; ids are made by the server and names are checked on the way in, so none holds
    a NUL. Lookups answer "not found" for such keys on both databases alike.
    """
    return "\x00" in key
