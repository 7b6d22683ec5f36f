"""Where the server is and which key to show it, for both the library's users and the CLI.

Flags win over the environment, the environment over the credentials.json that `slimformer serve`
writes for its local tenant, so a fresh install works with no configuration and CI can override
everything with two variables.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_URL", "credentials_path", "resolve_connection"]

DEFAULT_URL = "http://127.0.0.1:8000"


def credentials_path() -> Path:
    """SLIMFORMER_HOME/credentials.json (default ~/.slimformer)."""
    return Path(os.environ.get("SLIMFORMER_HOME", "~/.slimformer")).expanduser() / "credentials.json"


def resolve_connection(url: str | None = None, key: str | None = None) -> tuple[str, str | None]:
    """The server URL and API key: flags, then environment, then credentials.json, then the default URL."""
    stored: dict[str, Any] = {}
    path = credentials_path()
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        if not isinstance(stored, dict):
            stored = {}
    url = url or os.environ.get("SLIMFORMER_URL") or stored.get("url") or DEFAULT_URL
    key = key or os.environ.get("SLIMFORMER_API_KEY") or stored.get("api_key")
    return url.rstrip("/"), key
