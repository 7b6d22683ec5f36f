"""Bearer API keys, one tenant each.

A key is `sf_` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored: a key this
random needs no salt or slow hash (nothing to brute-force), and a leaked table reveals no key.
The first characters are kept as `prefix` so people can tell their keys apart in listings.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from slimformer.service.deps import SessionDep
from slimformer.service.errors import NotFound, Unauthorized
from slimformer.store.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "sf_"
_DISPLAY_CHARS = 11  # "sf_" + 8 characters
_MAX_KEY_LENGTH = 200


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    """The tenant called `name`, created if missing (flushed, not committed).

    Raises:
        ValueError: empty or over-long name.
    """
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a tenant name must be 1 to 100 characters")
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_api_key(session: Session, tenant_name: str, key_name: str = "") -> str:
    """Make a new key for a tenant (creating the tenant if needed). The caller commits.

    Args:
        session: an open session (e.g. from `session_scope`).
        tenant_name: the tenant's name.
        key_name: a label for people ("ci", "laptop").

    Returns:
        The plaintext key. It is shown this once: only its hash is stored.
    """
    tenant = get_or_create_tenant(session, tenant_name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant.id, prefix=key[:_DISPLAY_CHARS], key_hash=hash_key(key), name=key_name[:100]))
    session.flush()
    return key


def revoke_api_key(session: Session, prefix: str) -> int:
    """Revoke every live key whose display prefix is `prefix`. The caller commits.

    Returns:
        How many keys were revoked.

    Raises:
        NotFound: no live key has that prefix.
    """
    keys = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))).all()
    if not keys:
        raise NotFound(f"no live API key starts with {prefix!r}")
    for key in keys:
        key.revoked_at = utcnow()
    return len(keys)


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
    row = session.execute(
        select(Tenant, ApiKey.revoked_at).join(ApiKey, ApiKey.tenant_id == Tenant.id).where(
            ApiKey.key_hash == hash_key(key)
        )
    ).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("invalid API key")
    return row.Tenant


# --- the FastAPI dependency ----------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer sf_...`")


def get_current_tenant(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Tenant:
    """The tenant of the request's bearer key; `Unauthorized` (401) otherwise."""
    return tenant_for_key(session, credentials.credentials if credentials else None)


CurrentTenant = Annotated[Tenant, Depends(get_current_tenant)]
