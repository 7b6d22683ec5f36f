"""Schema version: upgrade the database, read its revision, and refuse to run on the wrong one.

The migrations live in `slimformer/migrations` and record their version in
`slimformer_alembic_version`, apart from Optuna's `alembic_version` in the same database.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from slimformer.errors import SlimformerError
from slimformer.migrations import VERSION_TABLE
from slimformer.store.db import is_unavailable, make_engine, unavailable_error
from slimformer.store.errors import SchemaOutOfDate

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
UPGRADE_COMMAND = "slimformer db upgrade"
# Any fixed 64-bit number: PostgreSQL advisory locks are named by integers.
_PG_LOCK_KEY = 0x5F1F0_2A3E


def alembic_config() -> Config:
    """The Alembic configuration of the packaged migrations, built in code (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision this slimformer knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the packaged migrations have no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at.

    Args:
        engine: the database.

    Returns:
        The revision id, or None for a database slimformer never migrated.

    Raises:
        DatabaseUnavailable: the database cannot be reached.
    """
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable_error(exc) from exc
        raise


def upgrade(database: str | URL | Engine, revision: str = "head") -> str | None:
    """Migrate the database to `revision`, creating every table on an empty database.

    Safe to run from several processes at once: on PostgreSQL the run holds an advisory lock and
    on SQLite an immediate (write) transaction, so the second process waits and then finds
    nothing left to do.

    Args:
        database: a URL or an engine.
        revision: target revision, normally "head".

    Returns:
        The revision the database is at afterwards.

    Raises:
        DatabaseUnavailable: the database cannot be reached.
    """
    engine = database if isinstance(database, Engine) else make_engine(database)
    try:
        with engine.begin() as conn, _migration_lock(conn):
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        return current_revision(engine)
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable_error(exc) from exc
        raise
    finally:
        if engine is not database:
            engine.dispose()


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    if conn.dialect.name == "postgresql":
        # Transaction-scoped: released by the commit that also makes the new schema visible.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        # pysqlite only opens a transaction before DML, so DDL would otherwise autocommit one
        # statement at a time; an explicit immediate transaction makes the run atomic and serial.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    yield


def check_schema(engine: Engine) -> str:
    """Make sure the database is at exactly the revision this slimformer needs.

    Args:
        engine: the database.

    Returns:
        The current (= head) revision.

    Raises:
        SchemaOutOfDate: the database is empty, behind, or at a revision this slimformer does not
            know (written by a newer slimformer). The message says what to run.
        DatabaseUnavailable: the database cannot be reached.
    """
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return current
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise SchemaOutOfDate(
            f"the database {where} has no slimformer tables (schema revision none, needed {head}); "
            f"create them with: {UPGRADE_COMMAND}"
        )
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current not in known:
        raise SchemaOutOfDate(
            f"the database {where} is at schema revision {current}, which this slimformer does not know "
            f"(it needs {head}); it was probably written by a newer slimformer: upgrade slimformer"
        )
    raise SchemaOutOfDate(
        f"the database {where} is at schema revision {current}, but this slimformer needs {head}; "
        f"run: {UPGRADE_COMMAND}"
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m slimformer.store.schema [upgrade|current|check]` on `SLIMFORMER_DATABASE_URL`.

    The hook behind `slimformer db upgrade`.
    """
    from slimformer.contracts.settings import Settings

    args = list(sys.argv[1:] if argv is None else argv) or ["upgrade"]
    settings = Settings()
    engine = make_engine(settings.database_url)
    try:
        if args[0] == "upgrade":
            print(f"schema at {upgrade(engine)}")
        elif args[0] == "current":
            print(current_revision(engine) or "none")
        elif args[0] == "check":
            print(f"schema at {check_schema(engine)}: up to date")
        else:
            print(f"unknown command {args[0]!r}: use upgrade, current or check", file=sys.stderr)
            return 2
    except SlimformerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
