"""Accounting: allocations, reviewers, prices, discounts, exchange and credit rates,
tenant terms, tax settings, run segments and usage records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
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
        "accounting_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_accounting_settings")),
    )
    op.create_table(
        "allocation_reviewers",
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("user", "step", name=op.f("pk_allocation_reviewers")),
    )
    op.create_table(
        "allocations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=130), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("programme", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("expires", sa.Date(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
        sa.UniqueConstraint("seq", name=op.f("uq_allocations_seq")),
    )
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_allocations_project"), ["project"], unique=False)
        batch_op.create_index(batch_op.f("ix_allocations_tenant"), ["tenant"], unique=False)

    op.create_table(
        "credit_rates",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("gpu_type", sa.String(length=64), nullable=False),
        sa.Column("credits_per_hour", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("site", "gpu_type", name=op.f("pk_credit_rates")),
    )
    op.create_table(
        "discounts",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("rate", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("kind", "tier", name=op.f("pk_discounts")),
    )
    op.create_table(
        "exchange_rates",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("per_usd", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("day", "currency", name=op.f("pk_exchange_rates")),
    )
    op.create_table(
        "prices",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("gpu_type", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("amount", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("site", "gpu_type", "valid_from", name=op.f("pk_prices")),
    )
    op.create_table(
        "run_segments",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=True),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("gpu_type", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=130), nullable=False),
        sa.Column("allocation_id", sa.String(length=40), nullable=True),
        sa.Column("ended", sa.String(length=16), nullable=False),
        sa.Column("preempt_notice", sa.Integer(), nullable=True),
        sa.Column("last_checkpoint", sa.Integer(), nullable=True),
        sa.Column("metered", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "attempt", name=op.f("pk_run_segments")),
    )
    with op.batch_alter_table("run_segments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_segments_metered"), ["metered"], unique=False)

    op.create_table(
        "tenant_terms",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("enforced", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenant_terms")),
    )
    op.create_table(
        "usage_records",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("gpu_type", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=130), nullable=False),
        sa.Column("allocation_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "attempt", "start", "end", name=op.f("pk_usage_records")),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_records_allocation_start", ["allocation_id", "start"], unique=False
        )
        batch_op.create_index("ix_usage_records_tenant_start", ["tenant", "start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_tenant_start")
        batch_op.drop_index("ix_usage_records_allocation_start")

    op.drop_table("usage_records")
    op.drop_table("tenant_terms")
    with op.batch_alter_table("run_segments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_segments_metered"))

    op.drop_table("run_segments")
    op.drop_table("prices")
    op.drop_table("exchange_rates")
    op.drop_table("discounts")
    op.drop_table("credit_rates")
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allocations_tenant"))
        batch_op.drop_index(batch_op.f("ix_allocations_project"))

    op.drop_table("allocations")
    op.drop_table("allocation_reviewers")
    op.drop_table("accounting_settings")
