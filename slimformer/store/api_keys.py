"""Tenants and their API keys at rest: make a tenant, store a key's hash, revoke keys, find a key's tenant.

Only a key's SHA-256 is stored: a key random enough (see `slimformer.service.auth`) needs no salt
or slow hash (nothing to brute-force), and a leaked table reveals no key. The first characters are
kept as `prefix` so people can tell their keys apart in listings.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from slimformer.store.errors import NotFound
from slimformer.store.models import ApiKey, Tenant, utcnow

MAX_TENANT_NAME = 100


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    """The tenant called `name`, created if missing (flushed, not committed).

    Raises:
        ValueError: empty or over-long name.
    """
    name = name.strip()
    if not name or len(name) > MAX_TENANT_NAME:
        raise ValueError(f"a tenant name must be 1 to {MAX_TENANT_NAME} characters")
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def add_api_key(session: Session, tenant_name: str, key: str, prefix: str, key_name: str = "") -> ApiKey:
    """Store a new key's hash for a tenant (creating the tenant if needed). The caller commits.

    Args:
        session: an open session.
        tenant_name: the tenant's name.
        key: the plaintext key; only its hash is stored.
        prefix: the key's first characters, kept for people to tell keys apart.
        key_name: a label for people ("ci", "laptop"), cut to 100 characters.

    Returns:
        The stored key row (flushed).
    """
    tenant = get_or_create_tenant(session, tenant_name)
    row = ApiKey(tenant_id=tenant.id, prefix=prefix, key_hash=hash_key(key), name=key_name[:100])
    session.add(row)
    session.flush()
    return row


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


def tenant_for_live_key(session: Session, key: str) -> Tenant | None:
    """The tenant of a stored, unrevoked key; None for an unknown or revoked one (told apart by nobody)."""
    row = session.execute(
        select(Tenant, ApiKey.revoked_at).join(ApiKey, ApiKey.tenant_id == Tenant.id).where(
            ApiKey.key_hash == hash_key(key)
        )
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    return row.Tenant
