"""Dated terms: discounts, tax rates and tenants' tiers, month by month, in ``dated_terms``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Before this revision a statement was rated with the discount table, tiers and tax
rates of the moment it was read, so changing one re-rated every month already billed.
Each is now a dated term (``masnaa.accounting.terms``): one row per version, in force
from its month's first day.

What was stored becomes the first version of each term, dated 1970-01-01; the
earliest version of a term also applies before its date, so every statement reads
as it did before the upgrade:

- the ``discounts`` table → term ``discounts`` (the table is dropped);
- ``accounting_settings["tax-rates"]`` → term ``tax-rates`` (the setting is deleted);
- ``tenant_terms.tier`` → term ``tier:<tenant>`` for each tenant with a tier (the
  column is dropped; ``enforced`` stays there).

The downgrade keeps the latest version of each term, the only one the old schema
can hold.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SINCE = date(1970, 1, 1)

dated = sa.table(
    "dated_terms",
    sa.column("term", sa.String),
    sa.column("valid_from", sa.Date),
    sa.column("value", sa.JSON),
)
settings = sa.table("accounting_settings", sa.column("key", sa.String), sa.column("value", sa.JSON))


def upgrade() -> None:
    op.create_table(
        "dated_terms",
        sa.Column("term", sa.String(length=80), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("term", "valid_from", name=op.f("pk_dated_terms")),
    )
    bind = op.get_bind()
    rows = []
    discounts = bind.execute(sa.text("SELECT kind, tier, rate FROM discounts")).all()
    if discounts:
        value = {"discounts": [{"kind": k, "tier": t or None, "rate": r} for k, t, r in discounts]}
        rows.append({"term": "discounts", "valid_from": SINCE, "value": value})
    tax = bind.execute(sa.select(settings.c.value).where(settings.c.key == "tax-rates")).first()
    if tax is not None:
        rows.append({"term": "tax-rates", "valid_from": SINCE, "value": {"rates": tax[0]}})
    for tenant, tier in bind.execute(sa.text("SELECT tenant, tier FROM tenant_terms")).all():
        if tier:
            rows.append({"term": f"tier:{tenant}", "valid_from": SINCE, "value": {"tier": tier}})
    if rows:
        op.bulk_insert(dated, rows)
    op.execute(settings.delete().where(settings.c.key == "tax-rates"))
    op.drop_table("discounts")
    # SQLite drops a column in place since 3.35 (Debian 12 has 3.40).
    op.drop_column("tenant_terms", "tier")


def downgrade() -> None:
    op.add_column("tenant_terms", sa.Column("tier", sa.String(length=32), nullable=False,
                                            server_default=""))
    op.create_table(
        "discounts",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("rate", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("kind", "tier", name=op.f("pk_discounts")),
    )
    bind = op.get_bind()
    latest: dict[str, dict[str, object]] = {}
    for term, _, value in bind.execute(
        sa.select(dated.c.term, dated.c.valid_from, dated.c.value).order_by(dated.c.valid_from)
    ):
        latest[term] = value
    for term, value in latest.items():
        if term == "discounts":
            for d in value["discounts"]:  # type: ignore[attr-defined]
                bind.execute(
                    sa.text("INSERT INTO discounts (kind, tier, rate) VALUES (:k, :t, :r)"),
                    {"k": d["kind"], "t": d["tier"] or "", "r": d["rate"]},
                )
        elif term == "tax-rates":
            op.bulk_insert(settings, [{"key": "tax-rates", "value": value["rates"]}])
        elif term.startswith("tier:"):
            bind.execute(
                sa.text("UPDATE tenant_terms SET tier = :t WHERE tenant = :n"),
                {"t": value["tier"] or "", "n": term.removeprefix("tier:")},
            )
    op.drop_table("dated_terms")
