"""Latency tables measured by workers, read by the API to check latency budgets at submission.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "latency_tables",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("space_key", sa.String(32), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("seq_len", sa.Integer(), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("runtime", sa.String(20), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("table", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_latency_tables"),
        sa.UniqueConstraint("key", name="uq_latency_tables_key"),
    )
    op.create_index(
        "ix_latency_tables_lookup", "latency_tables", ["space_key", "batch", "seq_len", "threads", "runtime"]
    )


def downgrade() -> None:
    op.drop_index("ix_latency_tables_lookup", table_name="latency_tables")
    op.drop_table("latency_tables")
