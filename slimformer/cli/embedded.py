"""The pieces of the embedded default that `slimformer serve` sets up around the API.

With no configuration, `serve` is a whole service on one machine: a SQLite file under
SLIMFORMER_HOME, a tenant `local` whose key is written (mode 0600) with the server's URL to
credentials.json, where the client commands find it, and one worker process beside the API.
Kept apart from the argument parsing so the start and stop of that worker can be read (and
tested) on their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "CREDENTIALS_FILE", "LOCAL_TENANT", "client_host", "embedded_worker_owner", "ensure_credentials",
    "start_worker_process", "stop_worker_process", "write_private_json",
]

CREDENTIALS_FILE = "credentials.json"
LOCAL_TENANT = "local"
WORKER_STOP_TIMEOUT_S = 30


def client_host(host: str) -> str:
    """The host a local client dials: a server bound to every interface is reached through loopback."""
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


def embedded_worker_owner(home: Path) -> str:
    """The embedded worker's lease owner name: the same every time `serve` starts on this home and host."""
    digest = hashlib.sha256(str(Path(home).expanduser().resolve()).encode()).hexdigest()[:12]
    return f"{socket.gethostname()}:embedded:{digest}"


def start_worker_process(no_ray: bool = False, owner: str | None = None) -> subprocess.Popen[bytes]:
    """The embedded worker: `python -m slimformer.workers.worker` in its own process.

    A process, not a thread: training never competes with the API for the GIL, the worker gets
    signals (SIGTERM hands its job back), and a crash in training cannot take the API down. It
    dies with the API on Linux even if the API is killed.

    Args:
        owner: a lease owner name stable across restarts (`embedded_worker_owner`): the worker then
            runs with --reclaim, so after `serve` was killed outright (no hand-back) and started
            again, the job it was running resumes at once rather than after the dead lease.
    """
    command = [sys.executable, "-m", "slimformer.workers.worker"] + (["--no-ray"] if no_ray else [])
    if owner:
        command += ["--owner", owner, "--reclaim"]
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
