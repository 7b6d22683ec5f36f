"""Uploaded data sets: record an upload, list and read a tenant's, find the file a job names.

The file itself lives under the artifact directory; rows hold its path relative to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from slimformer.store.errors import NotFound
from slimformer.store.models import Dataset
from slimformer.store.pages import Slice, SortKey, fetch_page
from slimformer.store.sql import names_nothing

DATASET_ORDER = (SortKey(Dataset.created_at, descending=True), SortKey(Dataset.id, descending=True))


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
    """The tenant's data set, or None (another tenant's reads as missing, and so does an id with NUL)."""
    if names_nothing(dataset_id):
        return None
    return session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id))


def list_datasets(
    session: Session, tenant_id: str, limit: int, offset: int = 0, cursor: str | None = None
) -> Slice[Dataset]:
    """One page of the tenant's data sets, newest first (by upload time, then id).

    Returns:
        The page, how many data sets the tenant has in all, and the next page's cursor (None on the
        last page).

    Raises:
        BadCursor: a malformed cursor, or one of another list.
    """
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    return fetch_page(session, query, DATASET_ORDER, f"datasets|{tenant_id}", limit, offset, cursor)


def recent_ids(session: Session, tenant_id: str, limit: int) -> list[str]:
    """The ids of the tenant's newest `limit` data sets (for error messages that list the choices)."""
    return list(session.scalars(
        select(Dataset.id).where(Dataset.tenant_id == tenant_id).order_by(Dataset.created_at.desc()).limit(limit)
    ).all())


def dataset_path(session: Session, dataset_id: str) -> str | None:
    """The data set's file, relative to the artifact directory; None if there is no such data set."""
    return session.scalar(select(Dataset.path).where(Dataset.id == dataset_id))
