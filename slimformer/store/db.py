"""Engines and the one session helper.

Every unit of database work runs in `session_scope`: one transaction that commits at the end or
rolls back on any error, so a failed request leaves nothing half-written. Driver errors that mean
"the database is not there" (refused or dropped connections, pool exhausted, SQLite file that
cannot be opened) become `DatabaseUnavailable`, which the API answers with 503.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from slimformer.store.errors import DatabaseUnavailable

# Long enough to ride out a writer holding SQLite's single write lock under load.
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5


def normalise_url(url: str | URL) -> URL:
    """The URL with a driver that is installed: plain `postgresql://` means psycopg 3 here.

    Args:
        url: a SQLAlchemy database URL.

    Returns:
        The parsed URL, `postgresql+psycopg` for any `postgresql`/`postgres` URL without a driver.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine set up for concurrent use by the API and workers.

    SQLite gets WAL (readers never block the writer), a busy timeout (writers queue instead of
    failing), and foreign keys (off by default in SQLite). PostgreSQL gets a connect timeout, so
    an unreachable server fails fast, and pre-ping, so a restarted server's dead connections are
    replaced instead of failing one request each.

    Args:
        url: database URL.
        **kwargs: passed to `sqlalchemy.create_engine` (overrides the defaults above).

    Returns:
        The engine. Creating it does not connect.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {
            "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        }
        options.update(kwargs)
        engine = create_engine(parsed, **options)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    options = {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 15}
    if parsed.get_backend_name() == "postgresql":
        options["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    options.update(kwargs)
    return create_engine(parsed, **options)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # The busy timeout first, so every statement below waits for a lock instead of failing.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _ensure_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        # NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the
        # last transactions, which a job's lease and checkpoints recover from.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _ensure_wal(cursor: Any) -> None:
    """Switch the file to WAL once; WAL is a property of the file, so later connections only read it.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database is locked" at
    once (without calling the busy handler) when another connection holds any lock on the file,
    e.g. a second process creating the schema at the same moment (`serve` next to a `worker`). So
    the switch is skipped when the file is already in WAL, and retried with jittered backoff up to
    the busy timeout otherwise.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.5)


def pool_capacity(engine: Engine) -> int | None:
    """How many connections the engine's pool can hand out at once; None when it has no bound."""
    pool = engine.pool
    if not isinstance(pool, QueuePool) or pool._max_overflow < 0:  # a negative overflow is unbounded
        return None
    return pool.size() + pool._max_overflow


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the API serialises them afterwards)."""
    return sessionmaker(engine, expire_on_commit=False)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a SQLAlchemy error means the database cannot be used right now (not a bug of ours).

    Args:
        exc: any exception.

    Returns:
        True for operational errors (connection refused or lost, server shutting down, SQLite file
        not openable or locked past the busy timeout), invalidated connections and pool timeouts.
    """
    if isinstance(exc, sa_exc.TimeoutError):  # the connection pool stayed exhausted
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    return False


def unavailable_error(exc: BaseException) -> DatabaseUnavailable:
    """The `DatabaseUnavailable` to raise for `exc`, with the driver's first line as the reason."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return DatabaseUnavailable(f"database unavailable: {reason[0] if reason else type(exc).__name__}")


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error, always close.

    Args:
        factory: from `make_session_factory`.

    Yields:
        The session. Callers may commit earlier themselves (e.g. to answer only after a write is
        durable); the final commit is then a no-op.

    Raises:
        DatabaseUnavailable: the database could not be reached or dropped the connection, during
            the block or the commit. Other exceptions pass through unchanged after the rollback.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException as exc:
        try:
            session.rollback()
        except sa_exc.SQLAlchemyError:
            pass  # the connection is already gone: there is nothing to roll back on our side
        if is_unavailable(exc):
            raise unavailable_error(exc) from exc
        raise
    finally:
        session.close()
