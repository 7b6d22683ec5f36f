"""Latency tables in the database: workers record what they measured, the API reads them.

Why in the database: the API never measures (it has no torch and may not run on a worker
machine), but a latency budget only means something on the machines that run the search. Every
worker records the table it built or checked for a job; at submission the API predicts the
space's fastest architecture with each table recorded for the job's setting and refuses a budget
that none of them can meet. With no table recorded yet the budget is checked by the search stage.

Torch-free: tables travel as `LatencyTable.to_dict()` documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from slimformer.search_space import SearchSpace
from slimformer.search_space.latency import LatencySetting, LatencyTable, LatencyTableError, space_key
from slimformer.store.models import LatencyTableRecord, utcnow


def record_table(session: Session, key: str, table: Mapping[str, Any], space: SearchSpace) -> None:
    """Insert or replace the table stored under `key` (see `LatencyTableRecord`).

    Args:
        key: names the machine, setting, torch version and space (`table_cache_path(...).stem`).
        table: `LatencyTable.to_dict()`.
        space: the space the table covers.

    Raises:
        LatencyTableError: if `table` is not a readable latency table document.
    """
    setting = LatencyTable.from_dict(table).setting  # refuse junk before it reaches the API's reads
    values = {
        "space_key": space_key(space), "batch": setting.batch, "seq_len": setting.seq_len,
        "threads": setting.threads, "runtime": setting.runtime, "hardware": dict(table.get("hardware") or {}),
        "table": dict(table), "updated_at": utcnow(),
    }
    for _ in range(2):  # a concurrent first insert of the same key loses the race once, then updates
        row = session.scalar(select(LatencyTableRecord).where(LatencyTableRecord.key == key))
        if row is not None:
            for name, value in values.items():
                setattr(row, name, value)
            session.flush()
            return
        try:
            with session.begin_nested():
                session.add(LatencyTableRecord(key=key, **values))
            return
        except IntegrityError:
            continue
    raise RuntimeError(f"latency table {key!r}: could not insert or update")  # pragma: no cover


def tables_for(session: Session, space: SearchSpace, setting: LatencySetting) -> list[LatencyTable]:
    """Every recorded table that covers `space` under `setting` (one per worker machine)."""
    rows = session.scalars(
        select(LatencyTableRecord).where(
            LatencyTableRecord.space_key == space_key(space),
            LatencyTableRecord.batch == setting.batch,
            LatencyTableRecord.seq_len == setting.seq_len,
            LatencyTableRecord.threads == setting.threads,
            LatencyTableRecord.runtime == setting.runtime,
        ).order_by(LatencyTableRecord.updated_at.desc())
    ).all()
    tables = []
    for row in rows:
        try:
            table = LatencyTable.from_dict(row.table)
        except LatencyTableError:  # written by another version: skip it, never fail a request over it
            continue
        if not table.missing(space):
            tables.append(table)
    return tables
