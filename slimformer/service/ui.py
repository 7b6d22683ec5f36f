"""The web dashboard: static HTML, CSS and JS shipped in the package, served by the API at /ui.

The pages are plain files (`ui_static/`); they call the same JSON API as every other client, with
the API key the user types in (kept in the browser's sessionStorage, sent as `Authorization:
Bearer`). Serving them needs no key: they hold no data. A strict Content-Security-Policy allows
scripts, styles and requests only from this server, so the dashboard fetches nothing else.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "ui_static"
UI_PATH = "/ui"

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Small files that change with the package: always revalidate (ETag), never serve a stale page.
    "cache-control": "no-cache",
}


class DashboardFiles(StaticFiles):
    """`StaticFiles` (index.html for the folder) with the dashboard's security headers on every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at /ui/ (and redirect /ui there). Not part of the OpenAPI schema."""

    @app.get(UI_PATH, include_in_schema=False)
    def dashboard_root() -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/", status_code=307)

    app.mount(UI_PATH, DashboardFiles(directory=STATIC_DIR, html=True), name="ui")
