"""Who may use a priority class: ``priority_classes.tenants``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

A class may name the tenants whose jobs may use it (the factory file's
``[[priority_classes]] tenants``); an empty list opens it to every tenant. Rows
written before this revision get the empty list, so every factory keeps working
as before until its operator restricts a class. Jobs already queued keep the class
they were submitted with: the rule is checked at submission only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The server default fills existing rows; the application always writes the column.
    op.add_column("priority_classes", sa.Column("tenants", sa.JSON(), nullable=False,
                                                server_default="[]"))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35 (Debian 12 has 3.40).
    op.drop_column("priority_classes", "tenants")
