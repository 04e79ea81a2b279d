"""Tables of accounting: allocations, reviewers, price data, run segments and usage records.

The pure core (``masnaa.accounting``) computes; these rows store what it needs
and what it returned. Writers:

- ``allocations``: the API (commands: request, review, award, tranche,
  supplement, extension, report, close) and the control loop (``settle``:
  activation, exhaustion, expiry). A row is an ``Allocation`` serialised in
  ``doc`` (reviews, progress reports with their products/DOIs, members and the
  event history included), with the columns the queries filter on copied out.
  ``seq`` grows by one on every write anywhere in the table, so the loop finds
  what changed with one index lookup; a write is a compare-and-set on ``seq``.
- ``allocation_reviewers``: operators (who may review which step).
- ``prices``, ``exchange_rates``, ``credit_rates``, ``dated_terms`` (discounts,
  tax rates and tenants' tiers, month by month), ``tenant_terms``,
  ``accounting_settings``: operators, validated by building the core's table
  before commit.
- ``run_segments``: the control loop; a row per run (job, attempt), written in
  the transaction that marks the job running, closed (``end``, ``ended``) in
  the transaction that settles it. ``metered`` becomes true once its usage
  records tile ``[start, end)``.
- ``usage_records``: the control loop, insert-only; the primary key is the
  core's record key (job, attempt, start, end), so re-emitting a tick after a
  crash is a no-op.

Instants are whole UNIX seconds (64-bit integers, ``SECONDS``), dates are UTC days, amounts are
decimal strings (exact on every backend).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from masnaa.store.base import Base

SECONDS = BigInteger().with_variant(Integer, "sqlite")
"""A UNIX instant in whole seconds: 64 bits on PostgreSQL, whose ``integer`` ends in
2038 (migration 0005); SQLite's ``INTEGER`` is 64 bits already."""


class AllocationRow(Base):
    __tablename__ = "allocations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    project: Mapped[str] = mapped_column(String(130), index=True)
    """``tenant/project``."""
    tier: Mapped[str] = mapped_column(String(32))
    programme: Mapped[str] = mapped_column(String(32), default="default")
    state: Mapped[str] = mapped_column(String(16))
    start: Mapped[date] = mapped_column(Date)
    expires: Mapped[date] = mapped_column(Date)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    doc: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[int] = mapped_column(SECONDS)


class ReviewerRow(Base):
    """A user who may review a step (the users table stays as it is)."""

    __tablename__ = "allocation_reviewers"

    user: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[str] = mapped_column(String(32), primary_key=True)


class PriceRow(Base):
    __tablename__ = "prices"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    gpu_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    valid_from: Mapped[date] = mapped_column(Date, primary_key=True)
    valid_to: Mapped[date | None] = mapped_column(Date, default=None)
    amount: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))


class DatedTermRow(Base):
    """One version of a dated term (``accounting.terms``), in force from ``valid_from``
    (a month's first day) until the next version of the same ``term``.

    ``term`` is ``discounts`` (value: ``{"discounts": [{kind, tier, rate}]}``),
    ``tax-rates`` (``{"rates": {currency: rate}}``) or ``tier:<tenant>``
    (``{"tier": name or null}``)."""

    __tablename__ = "dated_terms"

    term: Mapped[str] = mapped_column(String(80), primary_key=True)
    valid_from: Mapped[date] = mapped_column(Date, primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)


class ExchangeRateRow(Base):
    __tablename__ = "exchange_rates"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    per_usd: Mapped[str] = mapped_column(String(40))


class CreditRateRow(Base):
    __tablename__ = "credit_rates"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    gpu_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    credits_per_hour: Mapped[str] = mapped_column(String(40))


class TenantTermsRow(Base):
    """Per tenant: whether its projects need an allocation to run (its discount tier
    is a dated term, ``DatedTermRow``)."""

    __tablename__ = "tenant_terms"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    enforced: Mapped[bool] = mapped_column(Boolean)


class AccountingSetting(Base):
    """Key/value operator settings, e.g. ``terms-revision``."""

    __tablename__ = "accounting_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)


class RunSegmentRow(Base):
    __tablename__ = "run_segments"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(SECONDS)
    end: Mapped[int | None] = mapped_column(SECONDS, default=None)
    gpus: Mapped[int] = mapped_column(Integer)
    gpu_type: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(130))
    allocation_id: Mapped[str | None] = mapped_column(String(40), default=None)
    ended: Mapped[str] = mapped_column(String(16), default="running")
    preempt_notice: Mapped[int | None] = mapped_column(SECONDS, default=None)
    last_checkpoint: Mapped[int | None] = mapped_column(SECONDS, default=None)
    metered: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class UsageRecordRow(Base):
    __tablename__ = "usage_records"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(SECONDS, primary_key=True)
    end: Mapped[int] = mapped_column(SECONDS, primary_key=True)
    gpus: Mapped[int] = mapped_column(Integer)
    gpu_type: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(130))
    allocation_id: Mapped[str | None] = mapped_column(String(40), default=None)

    __table_args__ = (
        Index("ix_usage_records_allocation_start", "allocation_id", "start"),
        Index("ix_usage_records_tenant_start", "tenant", "start"),
    )
