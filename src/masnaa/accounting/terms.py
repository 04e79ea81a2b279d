"""Dated terms: discounts, tax rates and tenants' discount tiers, month by month.

Prices are dated (``prices.Price``); the other figures a statement reads are dated
here, so that changing one never re-rates a month already billed:

- a **version** of a setting is in force from the first day of its month until the
  next version's month. Before the first version, what was in force before terms
  could be set still is: the illustrative discount table (``DEFAULT_DISCOUNTS``)
  and no tier. Tax rates differ: without one no statement can be made
  (``no-tax-rate``), so none was ever sent, and the first tax rates set also apply
  to the months before them;
- versions start on a month's first day (``bad-effective-month`` otherwise),
  because a statement covers one month: each month is rated under one discount
  table, one tier per tenant and one tax rate per currency, and a statement never
  mixes two of them;
- ``TermsBook.cuts(lo, hi)`` gives the instants inside ``(lo, hi)`` where a
  discount or a tier changes, so that rating a longer span (an allocation's life)
  rates each part under its own terms (``rating.rate_in_parts``).

Which months may still be changed (the current one and later ones) is the service's
rule; this module only orders and looks up versions.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from itertools import pairwise
from typing import Generic, TypeVar

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import Instant, at
from masnaa.accounting.prices import (
    DEFAULT_DISCOUNTS,
    DiscountTable,
    ExchangeRates,
    PriceBook,
    TenantTerms,
)
from masnaa.accounting.rating import RatingContext
from masnaa.domain.tenancy import TenantKind

T = TypeVar("T")


def first_of_month(d: date) -> date:
    return d.replace(day=1)


class Dated(Generic[T]):
    """The versions of one setting, each in force from its month's first day."""

    def __init__(self, versions: Iterable[tuple[date, T]]) -> None:
        ordered = sorted(versions, key=lambda v: v[0])
        for (a, _), (b, _) in pairwise(ordered):
            if a == b:
                raise AccountingError(
                    "duplicate-version", f"two versions from {a.isoformat()}; keep one"
                )
        for d, _ in ordered:
            if d.day != 1:
                raise AccountingError(
                    "bad-effective-month",
                    f"a version starts on {d.isoformat()}; terms change on a month's first day",
                )
        self.months = [d for d, _ in ordered]
        self.values = [v for _, v in ordered]
        self._starts = [at(d) for d in self.months]

    def __bool__(self) -> bool:
        return bool(self.values)

    def at(self, when: Instant) -> T | None:
        """The version in force at ``when``; None before the first one."""
        i = bisect_right(self._starts, when) - 1
        return self.values[i] if i >= 0 else None

    def first(self) -> T | None:
        return self.values[0] if self.values else None

    def cuts(self, lo: Instant, hi: Instant) -> list[Instant]:
        """Where a version begins strictly inside ``(lo, hi)``."""
        return [s for s in self._starts if lo < s < hi]


@dataclass(frozen=True, slots=True)
class TermsBook:
    """Every dated term rating and statements read, and the tenants' kinds (undated:
    a tenant's kind is what it is)."""

    discounts: Dated[DiscountTable]
    tax_rates: Dated[Mapping[str, Decimal]]
    tiers: Mapping[str, Dated[str | None]]
    kinds: Mapping[str, TenantKind]
    default_discounts: DiscountTable = field(
        default_factory=lambda: DiscountTable(DEFAULT_DISCOUNTS)
    )

    def discount_table(self, when: Instant) -> DiscountTable:
        """The table in force; the illustrative defaults until an operator sets one."""
        found = self.discounts.at(when)
        return self.default_discounts if found is None else found

    def tenant_terms(self, when: Instant) -> dict[str, TenantTerms]:
        out = {}
        for name, kind in self.kinds.items():
            tiers = self.tiers.get(name)
            out[name] = TenantTerms(kind, tiers.at(when) if tiers else None)
        return out

    def taxes(self, when: Instant) -> Mapping[str, Decimal]:
        """currency → rate in force; the first rates set also before them (module doc)."""
        found = self.tax_rates.at(when)
        if found is None:
            found = self.tax_rates.first()
        return {} if found is None else found

    def parts(
        self,
        lo: Instant,
        hi: Instant,
        prices: PriceBook,
        fx: ExchangeRates | None = None,
        fx_day: date | None = None,
    ) -> list[tuple[tuple[Instant, Instant], RatingContext]]:
        """``[lo, hi)`` cut where a discount may change, each part with the terms in
        force in it (one part for a month), for ``rating.rate_in_parts``."""
        edges = [lo, *self.cuts(lo, hi), max(lo, hi)]
        return [
            (
                (a, b),
                RatingContext(prices, self.discount_table(a), self.tenant_terms(a), fx, fx_day),
            )
            for a, b in pairwise(edges)
        ]

    def cuts(self, lo: Instant, hi: Instant) -> list[Instant]:
        """The instants inside ``(lo, hi)`` where the discount of a line may change: a new
        discount table or a tenant's new tier (tax is per statement, so per month)."""
        found = set(self.discounts.cuts(lo, hi))
        for tiers in self.tiers.values():
            found.update(tiers.cuts(lo, hi))
        return sorted(found)
