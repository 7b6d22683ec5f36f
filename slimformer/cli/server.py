"""The server-side commands: `serve`, `worker`, `db`, `keys`.

    slimformer serve [--host 127.0.0.1] [--port 8000] [--no-worker] [--no-ray] [--access-log]
    slimformer worker [--lease 30] [--no-ray] [--once]
    slimformer db upgrade|current|check
    slimformer keys create --tenant NAME [--name LABEL] | keys revoke PREFIX

All read the service settings from `SLIMFORMER_*` variables. With no configuration, `serve` is the
embedded default (slimformer.cli.embedded): a SQLite file and artifacts under SLIMFORMER_HOME
(~/.slimformer), migrated at start, one worker process beside the API, and a tenant `local` whose
API key is stored with the server's URL in SLIMFORMER_HOME/credentials.json (mode 0600).
Command bodies import the service and the store when they run, so the client commands never do.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slimformer.cli.embedded import (
    LOCAL_TENANT,
    client_host,
    embedded_worker_owner,
    ensure_credentials,
    start_worker_process,
    stop_worker_process,
)
from slimformer.cli.errors import UserError
from slimformer.workers.arguments import add_worker_arguments

__all__ = ["add_server_commands"]


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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from slimformer.contracts.settings import Settings
    from slimformer.service.app import create_app

    settings = Settings()
    url = f"http://{client_host(args.host)}:{args.port}"
    if settings.database_url.startswith("sqlite"):
        # The embedded default: make the schema now, so the credentials can be written before the
        # API answers and the worker starts.
        from slimformer.store.schema import upgrade

        upgrade(settings.database_url)
        path = ensure_credentials(settings, url)
        print(f"slimformer: API key of tenant '{LOCAL_TENANT}' in {path}", file=sys.stderr)
    worker = None if args.no_worker else start_worker_process(no_ray=args.no_ray,
                                                              owner=embedded_worker_owner(settings.home))
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


def cmd_worker(args: argparse.Namespace) -> int:
    from slimformer.workers.worker import run_worker

    return run_worker(args)


def cmd_db(args: argparse.Namespace) -> int:
    from slimformer.store.schema import main as schema_main

    return schema_main([args.action])


@contextmanager
def _keys_session() -> Iterator[Any]:
    """A session on the configured database, its schema upgraded (or checked) first."""
    from slimformer.contracts.settings import Settings
    from slimformer.store.db import make_engine, make_session_factory, session_scope
    from slimformer.store.schema import check_schema, upgrade

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


def cmd_keys_create(args: argparse.Namespace) -> int:
    from slimformer.service.auth import create_api_key

    with _keys_session() as session:
        try:
            key = create_api_key(session, args.tenant, args.name)
        except ValueError as exc:  # a tenant or key name the store refuses
            raise UserError(str(exc)) from None
    print(key)
    print(f"(API key of tenant '{args.tenant}': shown only this once, store it now)", file=sys.stderr)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from slimformer.store.api_keys import revoke_api_key

    with _keys_session() as session:
        count = revoke_api_key(session, args.prefix)
    print(f"revoked {count} key{'s' if count != 1 else ''} starting with {args.prefix}")
    return 0
