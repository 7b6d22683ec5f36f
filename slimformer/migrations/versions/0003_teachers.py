"""Uploaded teachers, and the teacher a job names.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

`jobs.teacher_id` is a plain column (no foreign key): SQLite can add a column in place, but a
foreign key on an existing table would need the table rebuilt, and dropping the old `jobs` table
with foreign keys on would cascade to its events and candidates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teachers",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("tenant_id", sa.String(26), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("model_type", sa.String(40), nullable=False),
        sa.Column("architectures", sa.JSON(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_teachers"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_teachers_tenant_id_tenants", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_teachers_tenant_created", "teachers", ["tenant_id", "created_at"])
    op.add_column("jobs", sa.Column("teacher_id", sa.String(26), nullable=True))
    op.create_index("ix_jobs_teacher_id", "jobs", ["teacher_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_teacher_id", table_name="jobs")
    op.drop_column("jobs", "teacher_id")  # SQLite 3.35+ drops a plain, unindexed column in place
    op.drop_index("ix_teachers_tenant_created", table_name="teachers")
    op.drop_table("teachers")
