"""Instants of accounting in 64 bits: usage records, run segments, allocations' ``updated_at``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

These columns hold whole UNIX seconds. PostgreSQL's ``integer`` is 32 bits, so it
could not store an instant after 2038-01-19 03:14:07 UTC, and ``gpus * ("end" -
"start")`` (GPU-seconds, summed when the control loop rebuilds its balances) was
computed in 32 bits too: one record of 1,000 GPUs for 25 days passes 2^31. They
become ``bigint``, whose products and sums stay in 64 bits.

Widened (each an instant in UNIX seconds):

- ``usage_records.start``, ``usage_records.end`` (part of the primary key);
- ``run_segments.start``, ``end``, ``preempt_notice``, ``last_checkpoint``;
- ``allocations.updated_at``.

No column stores an amount of GPU-seconds: awarded, released and used GPU-time live
in the allocation's JSON ``doc`` or are summed from records, so no other column
changes. The rest of the integers are counts or identifiers (GPUs, attempts, ``seq``,
versions, quotas, exit codes). Times of the job tables are floats (8 bytes) already.

SQLite's ``INTEGER`` is 64 bits: nothing to do there (the models keep ``INTEGER`` on
SQLite through ``with_variant``), and this revision runs as a no-op.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = [
    ("usage_records", "start", False),
    ("usage_records", "end", False),
    ("run_segments", "start", False),
    ("run_segments", "end", True),
    ("run_segments", "preempt_notice", True),
    ("run_segments", "last_checkpoint", True),
    ("allocations", "updated_at", False),
]
"""(table, column, nullable)."""


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    if not _postgres():
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                        existing_nullable=nullable)


def downgrade() -> None:
    # Fails, leaving the schema as it was, if a value no longer fits in 32 bits.
    if not _postgres():
        return
    for table, column, nullable in reversed(COLUMNS):
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                        existing_nullable=nullable)
