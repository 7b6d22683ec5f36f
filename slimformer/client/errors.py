"""The client's one error type, and the one-line messages it carries.

Every failure of a request (no server, a timeout, an HTTP error status, a corrupted download)
becomes a ClientError whose message already reads well to a person, so a program using the
library and the CLI printing `error: ...` show the same words.
"""

from __future__ import annotations

import re

import httpx

from slimformer.errors import SlimformerError

__all__ = ["ClientError", "http_error_message", "transport_error_message"]


class ClientError(SlimformerError):
    """A request failed; the message says why in the user's terms (with the API's own detail).

    Attributes:
        status_code: the HTTP status when the server answered with an error, else None.
    """

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


def http_error_message(response: httpx.Response) -> str:
    """'HTTP 422 Unprocessable Entity: teacher: unknown teacher ...' from a FastAPI error body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text.strip()[:500] or None
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    message = f"HTTP {response.status_code} {response.reason_phrase}"
    if response.status_code == 401:
        message += " (check --key, SLIMFORMER_API_KEY or credentials.json)"
    return f"{message}: {detail}" if detail else message


def transport_error_message(exc: httpx.TransportError, url: str, what: str) -> str:
    """'cannot reach http://127.0.0.1:8000: connection refused (...)' and its kin, on one line."""
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach {url}: {_reason(exc)} (is `slimformer serve` running?)"
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer in time ({what})"
    return f"{what} to {url} failed: {type(exc).__name__}: {_reason(exc)}"


def _reason(exc: Exception) -> str:
    # httpx passes the socket error's text through: "[Errno 111] Connection refused".
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", " ".join(str(exc).split())) or type(exc).__name__
    return text[:1].lower() + text[1:]
