"""Health: is the database reachable and migrated; what the API knows of Ray. No key needed."""

from __future__ import annotations

import socket
import sys
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response

from slimformer.service.deps import SettingsDep
from slimformer.service.errors import DatabaseUnavailable
from slimformer.service.exception_handlers import RETRY_AFTER_SECONDS
from slimformer.service.openapi import RETRY_AFTER_HEADER
from slimformer.service.schemas import HealthOut
from slimformer.store.schema import current_revision, head_revision

router = APIRouter(prefix="/v1/health", tags=["health"])

_RAY_PROBE_TIMEOUT_S = 0.5


_UNAVAILABLE = {"model": HealthOut, "description": "The database is unreachable", "headers": RETRY_AFTER_HEADER}


@router.get("", responses={503: _UNAVAILABLE})
def health(request: Request, response: Response, settings: SettingsDep) -> HealthOut:
    """200 when the database answers, 503 when it does not. Ray is reported, never started."""
    database: dict[str, Any] = {"ok": True}
    try:
        database["revision"] = current_revision(request.app.state.engine)
        database["expected_revision"] = head_revision()
    except DatabaseUnavailable as exc:
        database = {"ok": False, "error": str(exc)}
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return HealthOut(status="ok" if database["ok"] else "unavailable", database=database,
                     ray=ray_status(settings.ray_address))


def ray_status(address: str | None) -> dict[str, Any]:
    """What the API can tell about Ray without starting it.

    Args:
        address: `RAY_ADDRESS` as configured (None: workers start a local Ray).

    Returns:
        `initialized` (only if this process already imported Ray; the API never does),
        `address`, and for a host:port address whether its port accepts a TCP connection.
    """
    ray = sys.modules.get("ray")
    status: dict[str, Any] = {"initialized": bool(ray is not None and ray.is_initialized()), "address": address}
    if address and address not in ("auto", "local"):
        try:
            parts = urlsplit(address if "://" in address else f"//{address}")
            host, port = parts.hostname, parts.port
        except ValueError:  # a malformed address: nothing to probe
            host, port = None, None
        if host and port:
            try:
                with socket.create_connection((host, port), timeout=_RAY_PROBE_TIMEOUT_S):
                    status["reachable"] = True
            except OSError:
                status["reachable"] = False
    return status
