"""Fixtures for the service tests: fresh databases on SQLite and PostgreSQL, live uvicorn servers.

PostgreSQL is the server named by SLIMFORMER_TEST_PG_URL (default: the local one, database
`test`); each test gets its own schema, dropped afterwards. When the server is unreachable the
PostgreSQL tests skip, unless SLIMFORMER_REQUIRE_PG=1 or CI=true, where they fail.

HTTP tests share one server per database (`api`) and stay apart by tenant: every test makes its
own tenants, and every query the API runs is scoped to a tenant.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from slimformer.contracts.settings import Settings
from slimformer.service.app import create_app
from slimformer.service.auth import create_api_key
from slimformer.store.db import session_scope

from live_server import LiveServer  # tests/live_server.py (pytest puts tests/, conftest.py's folder, on sys.path)

PG_URL = os.environ.get("SLIMFORMER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]

# Small limits, so the 413 tests send kilobytes, not megabytes.
TEST_MAX_BODY = 8 * 1024
TEST_MAX_UPLOAD = 64 * 1024


# --- databases -------------------------------------------------------------------------------------


def pg_required() -> bool:
    return os.environ.get("SLIMFORMER_REQUIRE_PG") == "1" or os.environ.get("CI", "").lower() == "true"


@lru_cache(maxsize=1)
def pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any failure means the same here: no PostgreSQL for these tests
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    finally:
        engine.dispose()


def need_pg() -> None:
    """Skip (or, where PostgreSQL is required, fail) when the server is unreachable."""
    reason = pg_unreachable()
    if reason is None:
        return
    message = f"PostgreSQL at {make_url(PG_URL).render_as_string(hide_password=True)} is unreachable ({reason})"
    if pg_required():
        pytest.fail(message + "; required because SLIMFORMER_REQUIRE_PG=1 or CI=true")
    pytest.skip(message)


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A URL of an empty database: a new SQLite file, or a new PostgreSQL schema (dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'{uuid.uuid4().hex[:8]}.db'}"
        return
    need_pg()
    schema = f"sf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        # Every connection of this URL sees only the new schema, version table included.
        yield make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind, one per test."""
    with fresh_database(backend, tmp_path) as url:
        yield url


# --- live servers ----------------------------------------------------------------------------------


def settings_for(home: Path, database_url: str, **overrides: object) -> Settings:
    """Settings for a test app: everything under `home`, small body limits."""
    values: dict[str, object] = dict(
        home=home, database_url=database_url, auto_migrate=True, max_body_bytes=TEST_MAX_BODY,
        max_upload_bytes=TEST_MAX_UPLOAD, default_page_size=10, max_page_size=50,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """`settings_for(home, database_url, **overrides)`: settings for a test app."""
    return settings_for


@pytest.fixture
def start_server() -> Iterator[Callable[[Settings], LiveServer]]:
    """Start servers for given settings; all are stopped after the test."""
    started: list[LiveServer] = []

    def start(settings: Settings, expect_start: bool = True) -> LiveServer:
        server = LiveServer(create_app(settings))
        started.append(server)
        ok = server.start()
        assert ok == expect_start, "server start " + ("failed" if expect_start else "succeeded unexpectedly")
        return server

    yield start
    for server in started:
        server.stop()


@dataclass
class Api:
    """A live server on one database, and ways to act as its tenants."""

    server: LiveServer
    backend: str
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def app(self) -> FastAPI:
        return self.server.app

    @property
    def settings(self) -> Settings:
        return self.app.state.settings

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction on the server's database (for arranging what the worker would have written)."""
        with session_scope(self.app.state.session_factory) as session:
            yield session

    def new_key(self, tenant: str | None = None) -> str:
        with self.session() as session:
            return create_api_key(session, tenant or f"tenant-{uuid.uuid4().hex[:10]}")

    def client(self, key: str | None = None, **kwargs: object) -> httpx.Client:
        """An HTTP client of the live server, authenticated with `key` if given."""
        headers = dict(kwargs.pop("headers", None) or {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        client = httpx.Client(base_url=self.server.url, headers=headers, timeout=60, **kwargs)
        self.clients.append(client)
        return client

    def tenant_client(self, **kwargs: object) -> httpx.Client:
        """A client of a brand-new tenant."""
        return self.client(self.new_key(), **kwargs)


@pytest.fixture(scope="session", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One live server per database, shared by the HTTP tests (which keep apart by tenant)."""
    home = tmp_path_factory.mktemp(f"api-{request.param}")
    with fresh_database(request.param, home) as url:
        server = LiveServer(create_app(settings_for(home, url)))
        assert server.start(), "the API did not start"
        api = Api(server=server, backend=request.param)
        try:
            yield api
        finally:
            for client in api.clients:
                client.close()
            server.stop()


@pytest.fixture
def api_of() -> Iterator[Callable[[LiveServer], Api]]:
    """`api_of(server)`: the `Api` helpers for a server a test started itself; its clients are closed after."""
    made: list[Api] = []

    def wrap(server: LiveServer) -> Api:
        made.append(Api(server=server, backend="own"))
        return made[-1]

    yield wrap
    for api in made:
        for client in api.clients:
            client.close()


# --- files -----------------------------------------------------------------------------------------


def _write_teacher(folder: Path, model_type: str = "bert", **config: object) -> Path:
    """A folder that passes the API's teacher check (config.json, weights and vocab by name only)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    doc = dict(
        model_type=model_type, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        vocab_size=100, max_position_embeddings=64, type_vocab_size=2,
    )
    doc.update(config)
    (folder / "config.json").write_text(json.dumps(doc))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    return folder


def _csv_bytes(rows: int = 40, labels: tuple[str, ...] = ("neg", "pos")) -> bytes:
    """A small valid CSV data set with distinct texts."""
    lines = ["text,label"] + [f"sentence number {i} is here,{labels[i % len(labels)]}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def write_teacher() -> Callable[..., Path]:
    """`write_teacher(folder, model_type="bert", **config)`: a teacher folder the API accepts."""
    return _write_teacher


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer, hidden-32 `BertForSequenceClassification` (2 labels, LABEL_0/LABEL_1, so it fits any
    two-label data set by index) saved with `save_pretrained`,
    with the tiny WordPiece tokenizer: what a user's own fine-tuned model folder looks like. Read-only."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from slimformer.supernet.tiny import make_tiny_teacher

    folder = make_tiny_teacher(tmp_path_factory.mktemp("tiny-classifier"), hidden=32, layers=2, heads=2,
                               intermediate=64)
    config = BertConfig.from_pretrained(folder)
    config.num_labels, config.architectures = 2, ["BertForSequenceClassification"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def _archive(folder: Path, kind: str = "zip", prefix: str = "", skip: tuple[str, ...] = ()) -> bytes:
    """The files of `folder` as a zip, tar or tar.gz, under `prefix` ("" or "name/"), leaving out `skip`."""
    import io
    import tarfile
    import zipfile

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in skip)
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                archive.write(file, prefix + file.name)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz" if kind == "tar.gz" else "w") as archive:
            for file in files:
                archive.add(file, prefix + file.name)
    return buffer.getvalue()


@pytest.fixture
def archive_of() -> Callable[..., bytes]:
    """`archive_of(folder, kind="zip"|"tar"|"tar.gz", prefix="", skip=())`: a model folder as archive bytes."""
    return _archive


@pytest.fixture
def make_csv() -> Callable[..., bytes]:
    """`make_csv(rows=40, labels=("neg", "pos"))`: a valid CSV data set."""
    return _csv_bytes


@dataclass
class SeededJob:
    """A job with candidates and artifacts, as a finished worker would have left it."""

    job_id: str
    candidate_ids: list[str]
    artifact_files: dict[str, Path]  # format -> file or folder written under the artifact dir


def _seed_job(api: Api, client: httpx.Client, candidates: int = 4) -> SeededJob:
    from slimformer.store.artifacts import upsert_artifact
    from slimformer.store.candidates import upsert_candidate

    job_id = client.post("/v1/jobs", json={"name": "seeded"}).json()["id"]
    ids = []
    with api.session() as session:
        for i in range(candidates):
            measured = i < candidates - 1  # the last one was scored but never measured
            ids.append(upsert_candidate(
                session, job_id, f"hash{i:02d}", {"hidden": 128 + 64 * i, "blocks": [["ffn:256"]]},
                state="exported" if measured else "scored", pareto=i in (0, 2), proxy=1.0 - 0.1 * i,
                predicted_latency_ms=2.0 + i, measured_latency_ms=2.5 + i if measured else None,
                params=1_000_000 * (i + 1), memory_mb=4.0 + i,
                dev_accuracy=0.7 + 0.05 * i if measured else None, test_accuracy=0.68 + 0.05 * i if measured else None,
                metrics={"rank": i},
            ))
    root = api.settings.artifacts
    folder = root / "runs" / job_id / "export" / ids[0]
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden": 128}')
    (folder / "model.safetensors").write_bytes(os.urandom(3000))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    onnx = folder.parent / f"{ids[0]}.onnx"
    onnx.write_bytes(os.urandom(2000))
    with api.session() as session:
        upsert_artifact(session, ids[0], "hf", folder.relative_to(root).as_posix(), 3100)
        upsert_artifact(session, ids[0], "onnx", onnx.relative_to(root).as_posix(), 2000)
    return SeededJob(job_id=job_id, candidate_ids=ids, artifact_files={"hf": folder, "onnx": onnx})


@pytest.fixture
def seed_job() -> Callable[..., SeededJob]:
    """`seed_job(api, client, candidates=4)`: a job of the client's tenant with candidates and artifacts.

    Candidate 0 has an `hf` folder and an `onnx` file; candidates 0 and 2 are on the Pareto front;
    the last candidate has no measurements.
    """
    return _seed_job


@pytest.fixture
def pg_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty PostgreSQL schema (skips or fails per SLIMFORMER_REQUIRE_PG/CI when unreachable)."""
    with fresh_database("postgresql", tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def migrated_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database per backend, shared by one module's tests (which empty it as they need)."""
    from slimformer.store.schema import upgrade

    with fresh_database(request.param, tmp_path_factory.mktemp("migrated")) as url:
        upgrade(url)
        yield url
