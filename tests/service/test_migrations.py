"""Migrations from empty, the schema check at start, and living next to Optuna in one database."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from slimformer.contracts.settings import Settings
from slimformer.migrations import VERSION_TABLE
from slimformer.service.app import create_app
from slimformer.store.db import make_engine
from slimformer.store.errors import SchemaOutOfDate
from slimformer.store.models import Base
from slimformer.store.schema import alembic_config, check_schema, current_revision, head_revision, upgrade

TABLES = {
    "tenants", "api_keys", "datasets", "jobs", "job_events", "candidates", "artifacts", "latency_tables", "teachers",
}


def test_upgrade_from_empty_creates_everything(database_url):
    engine = make_engine(database_url)
    assert current_revision(engine) is None
    with pytest.raises(SchemaOutOfDate, match="slimformer db upgrade"):
        check_schema(engine)

    assert upgrade(database_url) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert TABLES | {VERSION_TABLE} == tables  # and no `alembic_version`: that name is Optuna's
    assert check_schema(engine) == head_revision()
    assert upgrade(engine) == head_revision()  # a second run has nothing to do

    # The migration builds exactly what the models describe.
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_0003_keeps_existing_jobs_and_goes_back_down(database_url):
    """Adding `jobs.teacher_id` keeps every job and its events (no table rebuild), and 0003 downgrades."""
    engine = make_engine(database_url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'a', CURRENT_TIMESTAMP)"))
        conn.execute(text(
            "INSERT INTO jobs (id, tenant_id, name, spec, spec_sha256, status, progress, cancel_requested, attempts, "
            "created_at, updated_at) VALUES ('j1', 't1', 'old', '{}', 'x', 'queued', 0, false, 0, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ))
        conn.execute(text("INSERT INTO job_events (job_id, at, level, message) VALUES "
                          "('j1', CURRENT_TIMESTAMP, 'info', 'job queued')"))
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, teacher_id FROM jobs")).all() == [("j1", None)]
        assert conn.execute(text("SELECT count(*) FROM job_events")).scalar() == 1
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    assert current_revision(engine) == "0002"
    assert "teachers" not in inspect(engine).get_table_names()
    assert "teacher_id" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    assert upgrade(engine) == head_revision()
    engine.dispose()


def test_0004_adds_empty_reference_points_and_goes_back_down(database_url):
    """`jobs.teacher`, `jobs.baseline` and `jobs.metric` are added empty to existing jobs; 0004 downgrades."""
    engine = make_engine(database_url)
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'a', CURRENT_TIMESTAMP)"))
        conn.execute(text(
            "INSERT INTO jobs (id, tenant_id, name, spec, spec_sha256, status, progress, cancel_requested, attempts, "
            "created_at, updated_at) VALUES ('j1', 't1', 'old', '{}', 'x', 'succeeded', 1, false, 1, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ))
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, teacher, baseline, metric FROM jobs")).all() == [("j1", None, None, None)]
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    assert current_revision(engine) == "0003"
    assert not {"teacher", "baseline", "metric"} & {c["name"] for c in inspect(engine).get_columns("jobs")}
    assert upgrade(engine) == head_revision()
    engine.dispose()


def test_concurrent_upgrades_both_succeed(database_url):
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(upgrade, [database_url] * 2)) == [head_revision()] * 2


def test_shares_a_database_with_optuna(database_url):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(database_url)
    upgrade(database_url)
    engine = make_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    assert {"alembic_version", VERSION_TABLE, "studies", "jobs"} <= tables
    check_schema(engine)
    # Optuna's schema is intact: its version check passes and it still stores studies.
    assert storage.get_current_version() == storage.get_head_version()
    storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    assert [s.study_name for s in storage.get_all_studies()] == ["s"]
    storage.engine.dispose()
    engine.dispose()


async def _start(app) -> None:
    async with app.router.lifespan_context(app):
        pass


def test_app_refuses_an_old_schema_unless_it_may_migrate(database_url, tmp_path, make_settings, start_server):
    settings = make_settings(tmp_path, database_url, auto_migrate=False)
    with pytest.raises(SchemaOutOfDate) as refused:
        asyncio.run(_start(create_app(settings)))
    assert "slimformer db upgrade" in str(refused.value)
    start_server(settings, expect_start=False)  # real uvicorn gives up too

    # A database written by a newer slimformer is refused with a different remedy.
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00dfeed'"))
    with pytest.raises(SchemaOutOfDate, match="newer slimformer: upgrade slimformer"):
        asyncio.run(_start(create_app(settings)))
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {VERSION_TABLE}"))
        tables = ("artifacts", "candidates", "job_events", "jobs", "datasets", "teachers", "api_keys", "tenants",
                  "latency_tables")
        for table in tables:
            conn.execute(text(f"DROP TABLE {table}"))
    engine.dispose()

    # With auto_migrate the same empty database is brought up to date at start.
    server = start_server(make_settings(tmp_path, database_url, auto_migrate=True))
    assert current_revision(server.app.state.engine) == head_revision()


def test_settings_defaults_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMFORMER_HOME", str(tmp_path))
    for name in ("SLIMFORMER_DATABASE_URL", "SLIMFORMER_AUTO_MIGRATE", "SLIMFORMER_ARTIFACT_DIR", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    embedded = Settings()
    assert embedded.database_url == f"sqlite:///{tmp_path / 'slimformer.db'}"
    assert embedded.artifact_dir == tmp_path / "artifacts" and embedded.auto_migrate is True
    assert embedded.max_body_bytes == 1024 * 1024 and embedded.max_upload_bytes == 50 * 1024 * 1024

    monkeypatch.setenv("SLIMFORMER_DATABASE_URL", "postgresql://db/slimformer")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    shared = Settings()
    assert shared.auto_migrate is False and shared.ray_address == "10.0.0.1:6379"
    monkeypatch.setenv("SLIMFORMER_AUTO_MIGRATE", "1")
    assert Settings().auto_migrate is True
    assert make_engine("postgresql://u@h/db").url.drivername == "postgresql+psycopg"
