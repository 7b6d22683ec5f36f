"""Request body size limits, enforced while the body streams in.

A declared `Content-Length` over the limit is refused before the body is used; a chunked body (no
Content-Length) is counted as it arrives and refused the moment it passes the limit, so no request
can make the server buffer more than the limit.

Before the 413 goes out, up to `DRAIN_BYTES` of the rest of the body are read and thrown away: a
server that closes a connection with unread data makes the kernel reset it, and the client then
sees "connection reset" instead of the 413. Anything larger is cut off regardless.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_BYTES = 8 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes its limit.

    An HTTPException, so FastAPI's body parsing lets it through instead of calling it a malformed
    body (400); the exception handlers then answer 413.
    """

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=f"request body is over the limit of {limit} bytes")


class BodySizeLimitMiddleware:
    """Pure ASGI middleware: 413 for bodies over `default_limit`, or over a per-path limit.

    Args:
        app: the wrapped application.
        default_limit: bytes allowed for any request body.
        path_limits: exact paths with their own limit (e.g. uploads).
    """

    def __init__(self, app: ASGIApp, default_limit: int, path_limits: dict[str, int] | None = None):
        self.app = app
        self.default_limit = default_limit
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"].rstrip("/") or "/", self.default_limit)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            if declared - limit <= DRAIN_BYTES:
                await _drain(receive)
            await _send_too_large(send, limit)
            return

        received = 0
        exceeded = False
        body_done = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded, body_done
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                if exceeded and not body_done:
                    await _drain(receive)
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Reached only when the body was read outside FastAPI's handlers (e.g. by a middleware).
            if response_started:
                raise
            if not body_done:
                await _drain(receive)
            await _send_too_large(send, limit)


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of the body, up to DRAIN_BYTES."""
    drained = 0
    while drained <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body is over the limit of {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
