"""`slimformer serve` as a real process group for tests: start it on a home of its own, wait until it
answers, stop it politely or SIGKILL the whole group (API, embedded worker, Ray) and prove that nothing
of it is left.

Shared by tests/test_cli_client.py (a server without Ray) and tests/test_serve_crash.py (a server with
Ray, killed mid-job and restarted on the same home). Imported as `serve_process`: pytest puts tests/,
the folder of tests/conftest.py, on sys.path.

Every process the server starts carries `SERVE_TAG_VARIABLE=<tag>` in its environment (children inherit
the environment, and Ray snapshots it for its GCS, raylet and workers), so the processes of one server
are found by their environment even when they left its process group: Ray's reaper and some of its
daemons call setpgrp, and a raylet whose parent died is re-parented to init.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

SERVE_TAG_VARIABLE = "SLIMFORMER_TEST_SERVE_TAG"
# Variables of the developer's shell that would point the server elsewhere than its own home.
_FOREIGN = ("SLIMFORMER_DATABASE_URL", "SLIMFORMER_ARTIFACTS", "SLIMFORMER_URL", "SLIMFORMER_API_KEY", "RAY_ADDRESS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tagged_processes(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment holds this tag, other than this one."""
    needle = f"{SERVE_TAG_VARIABLE}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state not in ("Z", "X") and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


class ServeProcess:
    """One `slimformer serve` on `home` (SQLite DB, artifacts, credentials, Ray's HOME all under it).

    Args:
        home: SLIMFORMER_HOME; a restart on the same home finds the same database, runs and key.
        ray: the embedded worker runs stages on a local Ray (False: `--no-ray`).
        ray_cpus: CPUs the local Ray believes it has (RAY_OVERRIDE_RESOURCES), so a job fits a small
            machine shared with other work.
        env: further environment for the server.
    """

    def __init__(self, home: Path, ray: bool = True, ray_cpus: int = 1, env: dict[str, str] | None = None):
        self.home = Path(home)
        self.ray = ray
        self.tag = uuid.uuid4().hex
        self.env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
        self.env.update(SLIMFORMER_HOME=str(self.home), SLIMFORMER_TORCH_THREADS="1", HF_HUB_OFFLINE="1",
                        TOKENIZERS_PARALLELISM="false", RAY_USAGE_STATS_ENABLED="0",
                        RAY_OVERRIDE_RESOURCES=json.dumps({"CPU": ray_cpus}), **{SERVE_TAG_VARIABLE: self.tag})
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self.escaped: list[str] = []  # processes SIGKILL of the group did not reach, by command line

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def flags(self) -> list[str]:
        """The client commands' connection flags for this server."""
        return ["--url", self.url, "--key", self.key]

    @property
    def log(self) -> Path:
        return self.home / f"serve-{self.starts}.log"

    @property
    def key(self) -> str:
        return json.loads((self.home / "credentials.json").read_text())["api_key"]

    def start(self, timeout: float = 180) -> ServeProcess:
        """Start the server in a new session (its own process group) and wait until /v1/health answers."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.home.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.port = free_port()
        script = Path(sys.executable).with_name("slimformer")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "slimformer.cli"]
        command += ["serve", "--port", str(self.port), "--log-level", "warning"] + ([] if self.ray else ["--no-ray"])
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"slimformer serve exited: {self.tail()}"
            assert time.monotonic() < deadline, f"slimformer serve did not answer: {self.tail()}"
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill_group(self, timeout: float = 30) -> None:
        """SIGKILL the server's process group, then any of its processes that left the group; assert none is left.

        What had to be killed outside the group is appended to `escaped` (command lines), for the
        caller to report.
        """
        assert self.process is not None
        # Only while the leader is unreaped: its pid (the group's id) cannot have been reused then.
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=timeout)  # reap it, so it is no zombie of ours
        deadline = time.monotonic() + timeout
        while left := tagged_processes(self.tag):
            for pid in left:
                name = process_name(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                if name not in self.escaped:
                    self.escaped.append(name)
            assert time.monotonic() < deadline, f"processes of the killed server survive: {left}"
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (the worker hands its job back, Ray shuts down), then SIGKILL whatever is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group()

    def __enter__(self) -> ServeProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
