"""Residency: datasets and artifacts, transfer grounds, job reads, the audit chain.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

``audit_records`` refuses ``UPDATE`` through a trigger on both databases, so
the application cannot rewrite history by mistake; a removed record breaks
the chain and ``audit_head`` shows a cut-off tail. (On PostgreSQL an operator
should also ``REVOKE UPDATE, DELETE, TRUNCATE`` from the application role.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("home_site", sa.String(length=64), nullable=False),
        sa.Column("jurisdictions", sa.JSON(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("serving_copy_countries", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("derived_from", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_datasets_tenant_id_tenants"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )
    op.create_index("ix_datasets_tenant_id_name", "datasets", ["tenant_id", "name"])
    op.create_index(op.f("ix_datasets_job_id"), "datasets", ["job_id"])
    op.create_table(
        "transfer_grounds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("condition", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("expires", sa.Float(), nullable=True),
        sa.Column("destinations", sa.JSON(), nullable=True),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.Column("granted_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"],
                                name=op.f("fk_transfer_grounds_dataset_id_datasets"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_grounds")),
    )
    op.create_index(op.f("ix_transfer_grounds_dataset_id"), "transfer_grounds", ["dataset_id"])
    op.create_table(
        "job_datasets",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"],
                                name=op.f("fk_job_datasets_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"],
                                name=op.f("fk_job_datasets_dataset_id_datasets"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "dataset_id", name=op.f("pk_job_datasets")),
    )
    op.create_index(op.f("ix_job_datasets_dataset_id"), "job_datasets", ["dataset_id"])
    op.create_table(
        "audit_records",
        sa.Column("seq", _BIG, autoincrement=False, nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("data_ids", sa.JSON(), nullable=False),
        sa.Column("rule_id", sa.Text(), nullable=True),
        sa.Column("legal_basis", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_records")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_records_hash")),
    )
    op.create_index(op.f("ix_audit_records_at"), "audit_records", ["at"])
    op.create_index("ix_audit_records_action_at", "audit_records", ["action", "at"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", _BIG, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION masnaa_audit_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit records are append-only'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records "
            "FOR EACH ROW EXECUTE FUNCTION masnaa_audit_append_only()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records "
            "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_records_no_update ON audit_records")
        op.execute("DROP FUNCTION IF EXISTS masnaa_audit_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
    op.drop_table("audit_head")
    op.drop_index("ix_audit_records_action_at", table_name="audit_records")
    op.drop_index(op.f("ix_audit_records_at"), table_name="audit_records")
    op.drop_table("audit_records")
    op.drop_index(op.f("ix_job_datasets_dataset_id"), table_name="job_datasets")
    op.drop_table("job_datasets")
    op.drop_index(op.f("ix_transfer_grounds_dataset_id"), table_name="transfer_grounds")
    op.drop_table("transfer_grounds")
    op.drop_index(op.f("ix_datasets_job_id"), table_name="datasets")
    op.drop_index("ix_datasets_tenant_id_name", table_name="datasets")
    op.drop_table("datasets")
