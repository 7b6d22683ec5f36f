"""At most as many requests inside the app as the database pool has connections.

The routes are synchronous: FastAPI runs each dependency and the endpoint as separate calls on its
thread pool (40 threads), and a request holds its database connection from its first query (the API
key check) until its session closes. With more requests in flight than connections, every thread can
end up waiting for a connection while every connection is held by a request waiting for a thread:
nothing moves until the pool's timeout, and then those requests fail with 503. 100 submissions at
once did exactly that on PostgreSQL (tests/service/test_concurrent_submissions.py).

Admitting at most `pool capacity` requests at a time makes that impossible: each admitted request
needs at most one connection, and there is one for each. The others wait in the event loop, which
costs no thread and no connection, and are served in turn.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send


class ConcurrencyLimitMiddleware:
    """Pure ASGI middleware: at most `limit` HTTP requests run in the app at once; others queue.

    Args:
        app: the wrapped application.
        limit: requests allowed in at once (the database pool's capacity); None admits all.
    """

    def __init__(self, app: ASGIApp, limit: int | None):
        self.app = app
        self.limit = limit
        self._gate: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit is None:
            await self.app(scope, receive, send)
            return
        if self._gate is None:  # made in the serving loop, not where the app was built
            self._gate = asyncio.Semaphore(self.limit)
        async with self._gate:
            await self.app(scope, receive, send)
