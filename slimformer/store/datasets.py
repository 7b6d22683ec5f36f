"""Uploaded data sets: record an upload, list and read a tenant's, find the file a job names.

The file itself lives under the artifact directory; rows hold its path relative to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slimformer.store.errors import NotFound
from slimformer.store.models import Dataset


def add_dataset(session: Session, **columns: Any) -> Dataset:
    """Record a validated upload (flushed; the caller commits once the file is in place).

    Args:
        session: an open session.
        **columns: the `Dataset` columns: id, tenant_id, name, path (relative to the artifact
            directory), format, rows, labels, sha256, size_bytes.

    Returns:
        The new row.
    """
    dataset = Dataset(**columns)
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, tenant_id: str, dataset_id: str) -> Dataset:
    """The tenant's data set.

    Raises:
        NotFound: no such data set, or another tenant's.
    """
    dataset = find_dataset(session, tenant_id, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return dataset


def find_dataset(session: Session, tenant_id: str, dataset_id: str) -> Dataset | None:
    """The tenant's data set, or None (another tenant's reads as missing)."""
    return session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id))


def list_datasets(session: Session, tenant_id: str, limit: int, offset: int) -> tuple[list[Dataset], int]:
    """One page of the tenant's data sets, newest first.

    Returns:
        (the page, how many data sets the tenant has in all).
    """
    where = Dataset.tenant_id == tenant_id
    total = session.scalar(select(func.count()).select_from(Dataset).where(where)) or 0
    rows = session.scalars(
        select(Dataset).where(where).order_by(Dataset.created_at.desc(), Dataset.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def recent_ids(session: Session, tenant_id: str, limit: int) -> list[str]:
    """The ids of the tenant's newest `limit` data sets (for error messages that list the choices)."""
    return list(session.scalars(
        select(Dataset.id).where(Dataset.tenant_id == tenant_id).order_by(Dataset.created_at.desc()).limit(limit)
    ).all())


def dataset_path(session: Session, dataset_id: str) -> str | None:
    """The data set's file, relative to the artifact directory; None if there is no such data set."""
    return session.scalar(select(Dataset.path).where(Dataset.id == dataset_id))
