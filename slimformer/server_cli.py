"""The server-side commands: `serve`, `worker`, `db`, `keys`.

    slimformer serve [--host 127.0.0.1] [--port 8000] [--no-worker] [--no-ray] [--access-log]
    slimformer worker [--lease 30] [--no-ray] [--once]
    slimformer db upgrade|current|check
    slimformer keys create --tenant NAME [--name LABEL] | keys revoke PREFIX

All read the service settings from `SLIMFORMER_*` variables. With no configuration, `serve` is the
embedded default: a SQLite file and artifacts under SLIMFORMER_HOME (~/.slimformer), migrated at
start, one worker process beside the API, and a tenant `local` whose API key is stored with the
server's URL in SLIMFORMER_HOME/credentials.json (mode 0600), where the client commands find it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from slimformer.workers.arguments import add_worker_arguments

CREDENTIALS_FILE = "credentials.json"
LOCAL_TENANT = "local"
WORKER_STOP_TIMEOUT_S = 30


def add_server_commands(sub: Any) -> None:
    """Register serve, worker, db and keys on the CLI's subparsers."""
    serve = sub.add_parser("serve", help="run the API (and, by default, one worker beside it)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="API only; run workers with `slimformer worker`")
    serve.add_argument("--no-ray", action="store_true", help="the embedded worker runs stages in its own process")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--access-log", action="store_true", help="log every request (off: status polls flood it)")
    serve.set_defaults(fn=cmd_serve)

    worker = sub.add_parser("worker", help="claim and run jobs from SLIMFORMER_DATABASE_URL (Ray at RAY_ADDRESS)")
    add_worker_arguments(worker)
    worker.set_defaults(fn=cmd_worker)

    db = sub.add_parser("db", help="database schema: upgrade, show the current revision, or check it")
    db.add_argument("action", choices=["upgrade", "current", "check"])
    db.set_defaults(fn=cmd_db)

    keys = sub.add_parser("keys", help="create or revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make a key for a tenant (created if new); printed once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a label for people, e.g. 'ci'")
    create.set_defaults(fn=cmd_keys_create)
    revoke = keys_sub.add_parser("revoke", help="revoke the keys starting with PREFIX (as listed, e.g. sf_AbCdEfGh)")
    revoke.add_argument("prefix")
    revoke.set_defaults(fn=cmd_keys_revoke)


# --- serve -------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from slimformer.contracts.settings import Settings
    from slimformer.service.app import create_app

    settings = Settings()
    url = f"http://{_client_host(args.host)}:{args.port}"
    if settings.database_url.startswith("sqlite"):
        # The embedded default: make the schema now, so the credentials can be written before the
        # API answers and the worker starts.
        from slimformer.store.schema import upgrade

        upgrade(settings.database_url)
        path = ensure_credentials(settings, url)
        print(f"slimformer: API key of tenant '{LOCAL_TENANT}' in {path}", file=sys.stderr)
    worker = None if args.no_worker else start_worker_process(no_ray=args.no_ray)
    # uvicorn re-raises the signal that stopped it once it has shut down, with the handlers it
    # found installed: the default ones would kill this process before it stops its worker.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    try:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                    access_log=args.access_log)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        if worker is not None:
            stop_worker_process(worker)
    return 0


def _exit_cleanly(signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def _client_host(host: str) -> str:
    # A server bound to every interface is reached locally through loopback.
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)


def ensure_credentials(settings: Any, url: str) -> Path:
    """Make sure SLIMFORMER_HOME/credentials.json holds a working key of tenant `local` and the URL.

    A stored key is kept while the database still knows it; otherwise (first start, or a fresh
    database) a new one is made.

    Args:
        settings: the service settings.
        url: where clients reach this server.

    Returns:
        The credentials file (mode 0600).
    """
    from slimformer.service.auth import create_api_key, tenant_for_key
    from slimformer.service.errors import Unauthorized
    from slimformer.store.db import make_engine, make_session_factory, session_scope

    path = settings.home / CREDENTIALS_FILE
    key = None
    if path.is_file():
        try:
            key = json.loads(path.read_text()).get("api_key")
        except (OSError, ValueError, AttributeError):
            key = None
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            if key:
                try:
                    tenant_for_key(session, key)
                except Unauthorized:
                    key = None
            if not key:
                key = create_api_key(session, LOCAL_TENANT, "slimformer serve")
    finally:
        engine.dispose()
    write_private_json(path, {"url": url, "api_key": key, "tenant": LOCAL_TENANT})
    return path


def write_private_json(path: Path, doc: dict[str, Any]) -> None:
    """Write JSON readable by this user only, atomically (never a moment with wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.chmod(tmp, 0o600)  # O_CREAT's mode only applies to a new file
    os.replace(tmp, path)


def start_worker_process(no_ray: bool = False) -> subprocess.Popen[bytes]:
    """The embedded worker: `python -m slimformer.workers.worker` in its own process.

    A process, not a thread: training never competes with the API for the GIL, the worker gets
    signals (SIGTERM hands its job back), and a crash in training cannot take the API down. It
    dies with the API on Linux even if the API is killed.
    """
    command = [sys.executable, "-m", "slimformer.workers.worker"] + (["--no-ray"] if no_ray else [])
    return subprocess.Popen(command, preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _die_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1  # noqa: N806 (the name in <sys/prctl.h>)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # no glibc: the worker then outlives a killed API until its own SIGTERM


def stop_worker_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the worker hands its job back), then SIGKILL if it does not end in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- worker, db, keys ----------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    from slimformer.workers.worker import run_worker

    return run_worker(args)


def cmd_db(args: argparse.Namespace) -> int:
    from slimformer.store.schema import main as schema_main

    return schema_main([args.action])


def _keys_session():  # -> contextmanager of a Session on a current schema
    from contextlib import contextmanager

    from slimformer.contracts.settings import Settings
    from slimformer.store.db import make_engine, make_session_factory, session_scope
    from slimformer.store.schema import check_schema, upgrade

    @contextmanager
    def scope():
        settings = Settings()
        engine = make_engine(settings.database_url)
        try:
            if settings.auto_migrate:
                upgrade(engine)
            else:
                check_schema(engine)
            with session_scope(make_session_factory(engine)) as session:
                yield session
        finally:
            engine.dispose()

    return scope()


def cmd_keys_create(args: argparse.Namespace) -> int:
    from slimformer.service.auth import create_api_key

    try:
        with _keys_session() as session:
            key = create_api_key(session, args.tenant, args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(f"(API key of tenant '{args.tenant}': shown only this once, store it now)", file=sys.stderr)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from slimformer.store.api_keys import revoke_api_key

    with _keys_session() as session:
        count = revoke_api_key(session, args.prefix)
    print(f"revoked {count} key{'s' if count != 1 else ''} starting with {args.prefix}")
    return 0
