"""Statements in the live service: a tenant's month of usage, rated, over the store.

Owns the code that the API (``GET /statements/{tenant}``) and the portal
(``/statements``) share, so both show the same numbers:

- ``month("2026-11")``: the period as instants ``[first day, next month's
  first day)`` and its last day (the day whose exchange rate gives the USD
  view); anything else is ``bad-period`` (422);
- ``rated_month(s, period, tenant)``: the usage records (of ``tenant``, or
  of everyone for the operator report) that overlap the month, rated
  (preempted time uncharged), with the exchange rates the USD view lacks; a
  month that cannot be rated (``no-price``) is the core's refusal as a
  ``ServiceError``, while a missing exchange rate only leaves USD figures out.
  Discounts, tiers and tax rates are those in force in the month
  (``service.terms``), so a later change never re-rates it;
- ``statement_lines(s, tenant, period)``: its span and line items;
- ``tenant_statements``: one statement per currency, taxed at the operator's
  rates, each naming the rates its USD view lacks; ``statement_json``: their
  machine-readable form.

Visibility (the tenant itself or an operator) is the caller's to check, as it
differs between the API (404) and the portal (the not-found page).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import Instant, at
from masnaa.accounting.prices import MissingRate
from masnaa.accounting.rating import LineItem, rate_in_parts
from masnaa.accounting.statements import Statement, build_statements
from masnaa.service import accounting as svc
from masnaa.service import terms
from masnaa.service.tenancy import ServiceError
from masnaa.store import accounting as t


def month(period: str) -> tuple[Instant, Instant, date]:
    """``2026-11`` → [its first day, the next month's first day) as instants, and its last day.

    The month after must exist too (it bounds the period), so the last month
    there is is 9999-11."""
    try:
        first = date.fromisoformat(f"{period}-01")
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    except ValueError:
        raise ServiceError(
            "bad-period",
            f"period {period!r} must be a month like 2026-11, from 0001-01 to 9999-11",
            status=422,
            field="period",
        ) from None
    return at(first), at(nxt), nxt - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class RatedMonth:
    span: tuple[Instant, Instant]
    lines: list[LineItem]
    missing_rates: tuple[MissingRate, ...]
    """The exchange rates (of the month's last day) the lines' USD view lacks."""
    tax_rates: Mapping[str, Decimal]
    """currency → the tax rate in force in the month."""


def rated_month(s: Session, period: str, tenant: str | None = None) -> RatedMonth:
    """The month's usage (``tenant``'s, or everyone's), rated at the month's prices."""
    lo, hi, last = month(period)
    where = [t.UsageRecordRow.end > lo, t.UsageRecordRow.start < hi]
    if tenant is not None:
        where.append(t.UsageRecordRow.tenant == tenant)
    records = svc.load_records(s, where=where)
    book = terms.terms_book(s)
    parts = terms.rating_parts(s, lo, hi, last, book)
    try:
        lines = rate_in_parts(records, parts, svc.windows_for(s, records))
    except AccountingError as exc:
        raise svc.http_error(exc) from exc
    ctx = parts[-1][1]  # every part has the month's exchange rates
    return RatedMonth((lo, hi), lines, ctx.missing_rates(li.currency for li in lines),
                      book.taxes(lo))


def statement_lines(
    s: Session, tenant: str, period: str
) -> tuple[tuple[Instant, Instant], list[LineItem]]:
    """The month's span and the rated line items of ``tenant``'s usage in it."""
    rated = rated_month(s, period, tenant)
    return rated.span, rated.lines


def tenant_statements(s: Session, tenant: str, period: str) -> list[Statement]:
    """``tenant``'s statements for the month, one per currency, taxed."""
    rated = rated_month(s, period, tenant)
    try:
        return build_statements(
            rated.lines, tenant, rated.span, rated.tax_rates, rated.missing_rates
        )
    except AccountingError as exc:
        raise svc.http_error(exc) from exc


def missing_rate_json(gap: MissingRate) -> dict[str, str]:
    return {"currency": gap.currency, "day": gap.day.isoformat(), "message": gap.message}


def statement_json(statements: list[Statement], period: str) -> list[dict[str, Any]]:
    return [
        {
            "tenant": x.tenant,
            "currency": x.currency,
            "period": period,
            "charged_gpu_seconds": x.charged_gpu_seconds,
            "gross": str(x.gross.amount),
            "discount": str(x.discount.amount),
            "subtotal": str(x.subtotal.amount),
            "tax_rate": str(x.tax_rate),
            "tax": str(x.tax.amount),
            "total": str(x.total.amount),
            "total_usd": str(x.total_usd.amount) if x.total_usd else None,
            "missing_exchange_rates": [missing_rate_json(g) for g in x.missing_rates],
            "lines": [
                {
                    "job": li.job,
                    "project": li.project,
                    "allocation": li.allocation,
                    "site": li.site,
                    "gpu_type": li.gpu_type,
                    "charged_gpu_seconds": li.charged_gpu_seconds,
                    "uncharged_gpu_seconds": li.uncharged_gpu_seconds,
                    "net": str(li.net.amount),
                    "net_usd": str(li.net_usd.amount) if li.net_usd else None,
                }
                for li in x.lines
            ],
        }
        for x in statements
    ]
