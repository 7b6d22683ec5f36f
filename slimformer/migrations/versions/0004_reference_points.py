"""A job's reference points (teacher, TF-IDF baseline) and the task metric it optimises.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Plain nullable columns, added in place on every database: jobs from before have none (the API
shows null), and the worker fills them once a job's `baseline` stage is done.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("teacher", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("baseline", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("metric", sa.String(16), nullable=True))


def downgrade() -> None:
    # SQLite 3.35+ drops plain, unindexed columns in place.
    op.drop_column("jobs", "metric")
    op.drop_column("jobs", "baseline")
    op.drop_column("jobs", "teacher")
