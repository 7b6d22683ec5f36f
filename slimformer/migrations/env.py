"""Alembic environment of the service database.

`slimformer.store.schema.upgrade` passes an open connection in `config.attributes["connection"]`
(so it can hold a migration lock around the run); the `alembic` command line instead gets a URL
from `sqlalchemy.url` in the config or from `SLIMFORMER_DATABASE_URL`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from slimformer.migrations import VERSION_TABLE
from slimformer.store.models import Base

target_metadata = Base.metadata


def _include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    # Optuna's tables may live in the same database: autogenerate must neither drop nor diff them.
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_name=_include_name,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from slimformer.contracts.settings import Settings
    from slimformer.store.db import make_engine

    url = context.config.get_main_option("sqlalchemy.url") or Settings().database_url
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("slimformer migrations run online only: give a database URL, not --sql")
run_migrations_online()
