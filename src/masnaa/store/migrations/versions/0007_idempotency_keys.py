"""Idempotency keys: ``jobs.idempotency_key`` and ``jobs.request_digest``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28

A client that lost the answer to a submission (a dropped connection, a timeout) may
send it again with the same ``Idempotency-Key`` and get the job it already made
(``service.submit_keys``). The unique index makes "one job per user and key" hold
across API workers; rows written before this revision have no key, and NULLs never
collide.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE: SQLite's batch mode would copy ``jobs`` and drop the original,
    # and that drop cascades to every job's events (as in 0004).
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(length=128), nullable=True))
    op.add_column("jobs", sa.Column("request_digest", sa.String(length=64), nullable=True))
    op.create_index("ix_jobs_user_id_idempotency_key", "jobs", ["user_id", "idempotency_key"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_user_id_idempotency_key", table_name="jobs")
    op.drop_column("jobs", "request_digest")
    op.drop_column("jobs", "idempotency_key")
