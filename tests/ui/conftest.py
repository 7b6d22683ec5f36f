"""Fixtures for the dashboard tests: a headless Chromium (driven by playwright), and a live API with
an in-process worker (no Ray) that runs tiny jobs on the tiny teacher (uploaded by the test).

The browser is the system's Chromium (Debian: `apt-get install chromium`); playwright's own browser
download is never used. Without playwright or a browser the tests skip and say why, except where a
browser is required (CI=true or SLIMFORMER_REQUIRE_BROWSER=1), where they fail: `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from slimformer.contracts.settings import Settings
from slimformer.service.app import create_app
from slimformer.service.auth import create_api_key
from slimformer.store.db import session_scope

from live_server import LiveServer  # tests/live_server.py, the service tests' server

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser_required() -> bool:
    return os.environ.get("SLIMFORMER_REQUIRE_BROWSER") == "1" or os.environ.get("CI", "").lower() == "true"


def find_browser() -> str | None:
    """SLIMFORMER_BROWSER, or the first Chromium on PATH."""
    named = os.environ.get("SLIMFORMER_BROWSER")
    if named:
        return named if Path(named).is_file() else None
    return next((path for name in BROWSER_NAMES if (path := shutil.which(name))), None)


def no_browser_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    named = os.environ.get("SLIMFORMER_BROWSER")
    if named and not Path(named).is_file():
        return f"SLIMFORMER_BROWSER={named} is not a file"
    if find_browser() is None:
        return ("no Chromium found (looked for SLIMFORMER_BROWSER, then " + ", ".join(BROWSER_NAMES)
                + " on PATH); install one with `apt-get install chromium`")
    return None


# Module scope, not session: playwright's sync API keeps an asyncio loop running in the main thread
# while it is open, and any later test in the session that calls asyncio.run would then fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Chromium (playwright `Browser`)."""
    reason = no_browser_reason()
    if reason:
        if browser_required():
            pytest.fail(f"{reason}; required because CI=true or SLIMFORMER_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Chromium's sandbox refuses to run as root (containers, CI); it is a test browser on localhost.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=find_browser(), headless=True, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Service:
    url: str
    server: LiveServer
    settings: Settings

    def new_key(self) -> str:
        """The API key of a brand-new tenant."""
        with session_scope(self.server.app.state.session_factory) as session:
            return create_api_key(session, f"tenant-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API (tests/live_server.py's server, as the service tests use) and one in-process worker (no
    Ray) on a fresh SQLite database. Default settings otherwise: a job's teacher is a built-in or an
    upload, no server folder.
    """
    from slimformer.workers.worker import Worker

    home = tmp_path_factory.mktemp("ui-home")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'slimformer.db'}", auto_migrate=True)
    server = LiveServer(create_app(settings))
    assert server.start(), "the API did not start"
    worker = Worker(settings, owner="ui-worker", lease_seconds=10, poll_seconds=0.2, use_ray=False)
    thread = threading.Thread(target=worker.run_forever, daemon=True, name="ui-worker")
    thread.start()
    try:
        yield Service(url=server.url, server=server, settings=settings)
    finally:
        worker.stop()
        thread.join(timeout=120)
        worker.close()
        server.stop()
