"""A live uvicorn server for tests: the app in a background thread on 127.0.0.1 and a free port.

Shared by tests/service and tests/ui (imported as `live_server`: pytest puts tests/, the folder of
tests/conftest.py, on sys.path). `start()` waits for uvicorn's own signal that its start-up has
finished, instead of polling.
"""

from __future__ import annotations

import socket
import threading

import uvicorn
from fastapi import FastAPI


class _SignallingServer(uvicorn.Server):
    """uvicorn's server, setting `settled` once its start-up has finished (served or failed)."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.settled = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.settled.set()


class LiveServer:
    """uvicorn serving an app in a background thread on 127.0.0.1 and a free port."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = _SignallingServer(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except SystemExit as exc:  # uvicorn exits with 3 when the app's startup fails
            self.exit_code = exc.code if isinstance(exc.code, int) else 1
        finally:
            self.server.settled.set()  # also when it stopped before its start-up ran

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> bool:
        """Start and wait until it serves (no polling: uvicorn's start-up signals it). False if the app refused."""
        self.thread.start()
        if not self.server.settled.wait(timeout):
            raise TimeoutError("uvicorn did not start")
        return self.server.started

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        self.app.state.engine.dispose()  # also when startup failed and the lifespan never ran
