"""Reasons as phrases: ``jobs.state_phrases``, ``jobs.wait_phrases``, ``job_events.phrases``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

The English ``reason`` text stays; the phrases (``masnaa.domain.reasons``) let
the portal show it in the reader's language. Rows written before this revision
get an empty list, and the portal shows their English text as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The server default fills existing rows; the application always writes the column.
    # Plain ALTER TABLE on both databases: SQLite's batch mode would copy ``jobs`` and drop
    # the original, and that drop cascades to every job's events.
    op.add_column("jobs", sa.Column("state_phrases", sa.JSON(), nullable=False,
                                    server_default="[]"))
    op.add_column("jobs", sa.Column("wait_phrases", sa.JSON(), nullable=False,
                                    server_default="[]"))
    op.add_column("job_events", sa.Column("phrases", sa.JSON(), nullable=False,
                                          server_default="[]"))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35 (Debian 12 has 3.40).
    op.drop_column("job_events", "phrases")
    op.drop_column("jobs", "wait_phrases")
    op.drop_column("jobs", "state_phrases")
