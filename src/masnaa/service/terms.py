"""Rating inputs in the live service: prices, exchange rates and dated terms over the store.

Owns reading what rating needs (``price_book``, ``exchange_rates``, ``rating_parts``,
``tax_rates``)
and writing the dated terms (discounts, tax rates, tenants' tiers) that operators set
through ``/api/v1/discounts``, ``/tax-rates`` and ``/tenant-terms``.

The rule for writes (``effective_month``): a term takes effect on a month's first
day, from the current month (UTC) on. A month that has ended is closed
(``closed-month``, 409): its statements may have been sent, and a term set for it
would change them. Setting a term for a month that already has a version replaces
that version; versions of other months stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.accounting.instants import Instant, at
from masnaa.accounting.money import Money
from masnaa.accounting.prices import (
    Discount,
    DiscountTable,
    ExchangeRate,
    ExchangeRates,
    Price,
    PriceBook,
)
from masnaa.accounting.rating import RatingContext
from masnaa.accounting.terms import Dated, TermsBook
from masnaa.domain.tenancy import TenantKind
from masnaa.service.tenancy import ServiceError
from masnaa.store import accounting as t
from masnaa.store import models as m

DISCOUNTS = "discounts"
TAX_RATES = "tax-rates"
TIER = "tier:"
"""Prefix of a tenant's tier term: ``tier:<tenant>``."""


def month_label(d: date) -> str:
    return d.strftime("%Y-%m")


# --- reading --------------------------------------------------------------------------------


def discount_table(value: Mapping[str, Any]) -> DiscountTable:
    return DiscountTable(
        Discount(TenantKind(d["kind"]), Decimal(d["rate"]), d.get("tier") or None)
        for d in value["discounts"]
    )


def terms_book(s: Session) -> TermsBook:
    discounts: list[tuple[date, DiscountTable]] = []
    taxes: list[tuple[date, Mapping[str, Decimal]]] = []
    tiers: dict[str, list[tuple[date, str | None]]] = {}
    for r in s.scalars(select(t.DatedTermRow)):
        if r.term == DISCOUNTS:
            discounts.append((r.valid_from, discount_table(r.value)))
        elif r.term == TAX_RATES:
            taxes.append((r.valid_from, {k: Decimal(v) for k, v in r.value["rates"].items()}))
        elif r.term.startswith(TIER):
            tiers.setdefault(r.term.removeprefix(TIER), []).append(
                (r.valid_from, r.value.get("tier") or None)
            )
    kinds = {n: TenantKind(k) for n, k in s.execute(select(m.Tenant.name, m.Tenant.kind))}
    return TermsBook(
        Dated(discounts), Dated(taxes), {n: Dated(v) for n, v in tiers.items()}, kinds
    )


def price_book(s: Session) -> PriceBook:
    currencies = dict(s.execute(select(m.Site.name, m.Site.currency)).all())
    prices = [
        Price(r.site, r.gpu_type, Money.of(r.amount, r.currency), r.valid_from, r.valid_to)
        for r in s.scalars(select(t.PriceRow))
    ]
    return PriceBook(prices, currencies)


def exchange_rates(s: Session) -> ExchangeRates | None:
    """None without any rate: the USD view is informative, and then there is none."""
    rates = [
        ExchangeRate(r.day, r.currency, Decimal(r.per_usd))
        for r in s.scalars(select(t.ExchangeRateRow))
    ]
    return ExchangeRates(rates) if rates else None


def rating_parts(
    s: Session, lo: Instant, hi: Instant, fx_day: date | None, book: TermsBook | None = None
) -> list[tuple[tuple[Instant, Instant], RatingContext]]:
    """``[lo, hi)`` cut where a term changes, each part with the terms in force in it
    (one part for a month: terms change on months' first days); ``book``: the terms,
    when the caller has read them already."""
    fx = exchange_rates(s)
    book = terms_book(s) if book is None else book
    return book.parts(lo, hi, price_book(s), fx, fx_day if fx else None)


def tier_in(s: Session, tenant: str, month: date) -> str | None:
    """``tenant``'s tier in force in ``month`` (None: no tier)."""
    tiers = Dated((d, v.get("tier")) for d, v in versions(s, TIER + tenant))
    return tiers.at(at(month))


def tax_rates(s: Session, when: Instant) -> Mapping[str, Decimal]:
    """currency → the tax rate in force at ``when``."""
    return terms_book(s).taxes(when)


# --- writing --------------------------------------------------------------------------------


def effective_month(value: str | None, now: float) -> date:
    """The first day of the month a term takes effect: ``value`` (``2026-12``), or the
    current month; a month that has ended is refused."""
    current = datetime.fromtimestamp(now, tz=UTC).date().replace(day=1)
    if value is None:
        return current
    try:
        first = date.fromisoformat(f"{value}-01")
    except ValueError:
        raise ServiceError(
            "bad-effective-month",
            f"effective {value!r} must be a month like {month_label(current)}",
            status=422,
            field="effective",
        ) from None
    if first.year == 9999 and first.month == 12:  # as statements: the month after bounds it
        raise ServiceError(
            "bad-effective-month",
            f"effective {value!r} is past the last month a statement can cover (9999-11)",
            status=422,
            field="effective",
        )
    if first < current:
        raise ServiceError(
            "closed-month",
            f"{value} has ended and its statements may have been sent; terms take effect "
            f"from the current month ({month_label(current)}) on",
            status=409,
            field="effective",
        )
    return first


def put_version(s: Session, term: str, month: date, value: dict[str, Any]) -> None:
    """Set ``term``'s version for ``month``, replacing one already set for that month."""
    row = s.get(t.DatedTermRow, (term, month))
    if row is None:
        s.add(t.DatedTermRow(term=term, valid_from=month, value=value))
    else:
        row.value = value


def versions(s: Session, term: str) -> list[tuple[date, dict[str, Any]]]:
    row = t.DatedTermRow
    rows = s.scalars(select(row).where(row.term == term).order_by(row.valid_from))
    return [(r.valid_from, r.value) for r in rows]


def discounts_value(discounts: Iterable[Discount]) -> dict[str, Any]:
    return {
        "discounts": [
            {"kind": d.kind.value, "tier": d.tier, "rate": str(d.rate)} for d in discounts
        ]
    }
