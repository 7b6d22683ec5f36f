"""Bearer API keys, one tenant each: making a key, checking a presented one, the FastAPI dependency.

A key is `sf_` + 43 URL-safe characters (256 random bits). The store keeps only its SHA-256
(`slimformer.store.api_keys`), which is why a key is shown once, when it is made.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from slimformer.service.deps import SessionDep
from slimformer.service.errors import Unauthorized
from slimformer.store import api_keys
from slimformer.store.models import Tenant

KEY_PREFIX = "sf_"
_DISPLAY_CHARS = 11  # "sf_" + 8 characters
_MAX_KEY_LENGTH = 200


def create_api_key(session: Session, tenant_name: str, key_name: str = "") -> str:
    """Make a new key for a tenant (creating the tenant if needed). The caller commits.

    Args:
        session: an open session (e.g. from `session_scope`).
        tenant_name: the tenant's name.
        key_name: a label for people ("ci", "laptop").

    Returns:
        The plaintext key. It is shown this once: only its hash is stored.

    Raises:
        ValueError: empty or over-long tenant name.
    """
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_keys.add_api_key(session, tenant_name, key, key[:_DISPLAY_CHARS], key_name)
    return key


def tenant_for_key(session: Session, key: str | None) -> Tenant:
    """The tenant a presented key belongs to.

    Args:
        session: an open session.
        key: the bearer token, or None when the request had none.

    Returns:
        The key's tenant.

    Raises:
        Unauthorized: no key, not a slimformer key, unknown, or revoked. The messages differ only
            between "no key" and "bad key", so they tell an attacker nothing about which keys exist.
    """
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer sf_...'")
    if not key.startswith(KEY_PREFIX) or len(key) > _MAX_KEY_LENGTH:
        raise Unauthorized("invalid API key")
    tenant = api_keys.tenant_for_live_key(session, key)
    if tenant is None:
        raise Unauthorized("invalid API key")
    return tenant


# --- the FastAPI dependency ----------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer sf_...`")


def get_current_tenant(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Tenant:
    """The tenant of the request's bearer key; `Unauthorized` (401) otherwise."""
    return tenant_for_key(session, credentials.credentials if credentials else None)


CurrentTenant = Annotated[Tenant, Depends(get_current_tenant)]
