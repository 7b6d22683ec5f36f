"""A per-API-key rate limit on the requests that make work: job submissions and data set and teacher uploads.

A token bucket per key, in this process's memory: each key may make `rate` requests per window
(one minute in production), in bursts of up to `rate`, after which a request is refused (429)
with `Retry-After` saying how many whole seconds until the next one would be accepted.

The counts live in the API process, not the database: with several API processes behind a load
balancer each counts on its own (a key gets up to N times the limit), and a restart forgets them.
That is enough to stop a runaway script from queueing thousands of jobs; it is not a quota.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from slimformer.service.auth import CurrentTenant, bearer
from slimformer.service.errors import RateLimited

# Buckets of keys that have not asked for a while are full again, so forgetting them changes
# nothing; past this many, full ones are dropped so memory stays bounded by the active keys.
_PRUNE_ABOVE = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBucketLimiter:
    """`rate` requests per `window_s` per key, bursts of up to `rate`; thread-safe.

    Args:
        rate: requests allowed per window; 0 allows everything.
        window_s: the window's length in seconds (60 in production; tests use less).
        clock: monotonic seconds; injectable so tests need not sleep.
    """

    def __init__(self, rate: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        if rate < 0 or window_s <= 0:
            raise ValueError(f"rate must be >= 0 and window_s > 0, got {rate} and {window_s}")
        self.rate = rate
        self.window_s = window_s
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str) -> int | None:
        """Take one request from `key`'s bucket.

        Args:
            key: whose bucket (any string; the API uses a hash of the API key).

        Returns:
            None when the request may go ahead; otherwise the whole seconds (at least 1) until
            the bucket holds a request again, for `Retry-After`.
        """
        if not self.enabled:
            return None
        per_second = self.rate / self.window_s
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _PRUNE_ABOVE:
                    self._prune(now, per_second)
                bucket = self._buckets[key] = _Bucket(tokens=float(self.rate), at=now)
            else:
                # max(): a clock that stepped back must not take tokens away.
                bucket.tokens = min(float(self.rate), bucket.tokens + max(0.0, now - bucket.at) * per_second)
                bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            # Rounded up, so a client that waits exactly this long is accepted.
            return max(1, math.ceil((1.0 - bucket.tokens) / per_second))

    def _prune(self, now: float, per_second: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * per_second >= self.rate]
        for key in full:
            del self._buckets[key]


def limiter_key(api_key: str) -> str:
    """The bucket name of an API key: its hash, so plaintext keys are not kept in memory."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def enforce_rate_limit(
    request: Request,
    tenant: CurrentTenant,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """FastAPI dependency: count the request against its API key; `RateLimited` (429) over the limit.

    It depends on the tenant, so the key is checked first: a request with no key or a bad one is a
    401 and counts against nothing.

    Raises:
        RateLimited: the key has used its requests for now; `retry_after` says for how long.
    """
    del tenant  # only needed for its check
    assert credentials is not None  # get_current_tenant refused requests without one
    limiter: TokenBucketLimiter = request.app.state.rate_limiter
    wait = limiter.acquire(limiter_key(credentials.credentials))
    if wait is not None:
        raise RateLimited(
            f"too many requests for this API key: {limiter.rate} per {limiter.window_s:g} s; retry in {wait} s",
            retry_after=wait,
        )


RateLimit = Depends(enforce_rate_limit)
