"""A database outage answers 503 (never 500) and leaves no partial writes."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from slimformer.service.app import create_app
from slimformer.service.auth import create_api_key
from slimformer.store.db import make_engine, make_session_factory, session_scope
from slimformer.store.errors import DatabaseUnavailable
from slimformer.store.models import Tenant
from slimformer.store.schema import upgrade


class TcpProxy:
    """Forwards a local port to PostgreSQL; `cut()` drops every connection and refuses new ones."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.open = False
        with self.lock:
            cut, self.sockets = self.sockets, []
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def proxied_pg(pg_database_url):
    """(direct URL, URL through a proxy that the test can cut) of an empty PostgreSQL schema."""
    url = make_url(pg_database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield pg_database_url, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    proxy.close()


def _key(app) -> str:
    with session_scope(app.state.session_factory) as session:
        return create_api_key(session, "t")


def test_postgres_outage_is_503_and_writes_nothing(proxied_pg, tmp_path, make_settings, start_server):
    import httpx

    _, url, proxy = proxied_pg
    server = start_server(make_settings(tmp_path, url))
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {_key(server.app)}"}, timeout=30)
    assert client.post("/v1/jobs", json={"name": "before"}).status_code == 201

    proxy.cut()
    for method, path, body in [("GET", "/v1/jobs", None), ("POST", "/v1/jobs", {"name": "during"}),
                               ("GET", "/v1/health", None)]:
        r = client.request(method, path, json=body)
        assert r.status_code == 503, (path, r.text)
        assert r.headers["retry-after"] == "5"
    assert client.get("/v1/health").json()["database"]["ok"] is False
    assert "database unavailable" in client.get("/v1/jobs").json()["detail"]

    proxy.restore()
    jobs = client.get("/v1/jobs").json()
    assert [j["name"] for j in jobs["items"]] == ["before"]  # the refused submission left nothing
    assert client.get("/v1/health").status_code == 200
    client.close()


def test_a_transaction_cut_midway_writes_nothing(proxied_pg):
    direct, url, proxy = proxied_pg
    upgrade(direct)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with pytest.raises(DatabaseUnavailable):
        with session_scope(factory) as session:
            session.add(Tenant(name="first"))
            session.flush()  # reached the server inside the open transaction
            proxy.cut()
            session.add(Tenant(name="second"))
            session.flush()
    engine.dispose()
    checker = make_engine(direct)
    with session_scope(make_session_factory(checker)) as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 0
    checker.dispose()


def test_sqlite_file_gone_is_503(tmp_path, make_settings, start_server):
    import httpx

    folder = tmp_path / "db"
    server = start_server(make_settings(tmp_path, f"sqlite:///{folder / 'slimformer.db'}"))
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {_key(server.app)}"}, timeout=30)
    assert client.get("/v1/jobs").status_code == 200
    shutil.rmtree(folder)
    server.app.state.engine.dispose()  # pooled connections would still hold the deleted file open
    r = client.get("/v1/jobs")
    assert r.status_code == 503 and "unable to open database file" in r.json()["detail"]
    assert client.post("/v1/jobs", json={}).status_code == 503
    client.close()


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_unreachable_database_fails_start_and_sessions_cleanly(tmp_path, make_settings):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test"
    with pytest.raises(DatabaseUnavailable, match="database unavailable"):
        with session_scope(make_session_factory(make_engine(url))) as session:
            session.execute(select(1))

    async def start(app):
        async with app.router.lifespan_context(app):
            pass

    for auto_migrate in (True, False):
        app = create_app(make_settings(tmp_path, url, auto_migrate=auto_migrate))
        with pytest.raises(DatabaseUnavailable):
            asyncio.run(start(app))


def test_errors_inside_a_session_roll_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    with pytest.raises(RuntimeError):
        with session_scope(factory) as session:
            session.add(Tenant(name="half"))
            session.flush()
            raise RuntimeError("a bug halfway")
    with session_scope(factory) as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 0
