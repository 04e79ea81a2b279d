"""Builders for accounting tests: a small factory with five sites, prices,
discounts, exchange rates and an allocation policy, so a test reads as a story."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from masnaa.accounting.allocation import AllocationPolicy, Amount, Pool
from masnaa.accounting.allocations import request
from masnaa.accounting.instants import HOUR, at
from masnaa.accounting.metering import Segment, SegmentEnd, UsageRecord
from masnaa.accounting.money import Money
from masnaa.accounting.prices import (
    DEFAULT_DISCOUNTS,
    DiscountTable,
    ExchangeRate,
    ExchangeRates,
    Price,
    PriceBook,
    TenantTerms,
)
from masnaa.accounting.rating import RatingContext
from masnaa.domain.tenancy import TenantKind

SITES = {"ma-1": "MAD", "za-1": "ZAR", "ng-1": "NGN", "ke-1": "KES", "eg-1": "EGP", "us-1": "USD"}
H100 = "h100-sxm-80gb"
L40S = "l40s"
NOV = date(2026, 11, 1)
DEC = date(2026, 12, 1)
MONTH = (at(NOV), at(DEC))
T0 = at(NOV)

TERMS = {
    "uni": TenantTerms(TenantKind.UNIVERSITY),
    "seed": TenantTerms(TenantKind.STARTUP, "seed"),
    "corp": TenantTerms(TenantKind.ENTERPRISE),
    "ngo": TenantTerms(TenantKind.NGO),
}


def price_book(change_on: date | None = None) -> PriceBook:
    """30.00 per H100-hour and 10.00 per L40S-hour in every site currency;
    with ``change_on``, H100 goes to 33.00 from that date."""
    prices = []
    for site, cur in SITES.items():
        if change_on is None:
            prices.append(Price(site, H100, Money.of("30.00", cur), date(2026, 1, 1)))
        else:
            prices.append(Price(site, H100, Money.of("30.00", cur), date(2026, 1, 1), change_on))
            prices.append(Price(site, H100, Money.of("33.00", cur), change_on))
        prices.append(Price(site, L40S, Money.of("10.00", cur), date(2026, 1, 1)))
    return PriceBook(prices, SITES)


def fx() -> ExchangeRates:
    return ExchangeRates(
        [
            ExchangeRate(date(2026, 10, 1), "MAD", Decimal("10")),
            ExchangeRate(date(2026, 11, 15), "MAD", Decimal("9.5")),
            ExchangeRate(date(2026, 11, 1), "ZAR", Decimal("18")),
            ExchangeRate(date(2026, 11, 1), "NGN", Decimal("1500")),
            ExchangeRate(date(2026, 11, 1), "KES", Decimal("130")),
            ExchangeRate(date(2026, 11, 1), "EGP", Decimal("50")),
        ]
    )


def context(
    change_on: date | None = None, fx_day: date | None = date(2026, 11, 30)
) -> RatingContext:
    return RatingContext(
        price_book(change_on), DiscountTable(DEFAULT_DISCOUNTS), TERMS, fx(), fx_day
    )


def seg(
    job: str = "j1",
    start: int = T0,
    end: int | None = T0 + HOUR,
    *,
    attempt: int = 0,
    gpus: int = 8,
    gpu_type: str = H100,
    site: str = "ma-1",
    tenant: str = "uni",
    project: str = "p1",
    allocation: str | None = "a1",
    ended: SegmentEnd | None = None,
    notice: int | None = None,
    checkpoint: int | None = None,
) -> Segment:
    if ended is None:
        ended = SegmentEnd.RUNNING if end is None else SegmentEnd.COMPLETED
    return Segment(job, attempt, start, end, gpus, gpu_type, site, tenant, project, allocation,
                   ended, notice, checkpoint)  # fmt: skip


def rec(
    job: str = "j1",
    start: int = T0,
    end: int = T0 + HOUR,
    *,
    attempt: int = 0,
    gpus: int = 8,
    gpu_type: str = H100,
    site: str = "ma-1",
    tenant: str = "uni",
    project: str = "p1",
    allocation: str | None = "a1",
) -> UsageRecord:
    return UsageRecord(job, attempt, start, end, gpus, gpu_type, site, tenant, project, allocation)


REVIEWERS = {
    "admin-check": frozenset({"rita"}),
    "technical": frozenset({"tariq"}),
    "merit": frozenset({"mona", "musa"}),
}
OPERATORS = frozenset({"olu"})


def policy() -> AllocationPolicy:
    return AllocationPolicy.default(REVIEWERS, OPERATORS)


def hours(pool: Pool, h: int | str) -> Amount:
    return Amount({pool: Decimal(h)})


def gateway(id: str = "a1", project: str = "p1", h: int = 1000, pool: Pool = ("ma-1", H100)):
    """An auto-approved gateway grant (awarded at once), starting 1 Nov for 60 days."""
    return request(policy(), id=id, project=project, pi="pia", tier="gateway",
                   amount=hours(pool, h), start=NOV, duration_days=60,
                   justification="fine-tune a Darija speech model", at_=T0)  # fmt: skip
