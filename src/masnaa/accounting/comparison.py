"""Comparison prices: every site's price per GPU-hour in ONE unit, for choosing among sites.

The scheduler ranks a job's eligible sites by price (``Snapshot.site_prices``,
docs/scheduler.md "Site choice"). Rate cards are in each site's currency, so
they are put into one **comparison unit** first, from the same data rating
uses (``PriceBook``, ``ExchangeRates``):

- when every price in force is in one currency, that currency is the unit and
  no exchange rate is needed;
- otherwise the unit is the US dollar, at the latest rate on or before the
  day of ``t`` (the rule of ``ExchangeRates``); a price whose currency has no
  such rate is left out (the scheduler ranks its site after priced ones).

List prices are compared, not what a tenant pays: discounts depend on the
tenant's kind and tier, never on the site, so they keep the order.

The result holds ``float``: the scheduler only compares them, never bills
with them (bills use the exact ``Decimal`` path in ``rating``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import Instant, day_of
from masnaa.accounting.money import PRECISION
from masnaa.accounting.prices import ExchangeRates, PriceBook


@dataclass(frozen=True, slots=True)
class ComparisonPrices:
    unit: str
    """ISO 4217 code the prices are in (``USD``, or the one currency of every site)."""
    prices: dict[tuple[str, str], float] = field(default_factory=dict)
    """(site, GPU type) → price of one GPU-hour in ``unit``."""
    left_out: tuple[tuple[str, str], ...] = ()
    """Pairs with a price in force but no exchange rate to the unit."""


def comparison_prices(book: PriceBook, rates: ExchangeRates | None, t: Instant) -> ComparisonPrices:
    """The price in force at ``t`` of every (site, GPU type) of ``book``, in one unit."""
    in_force = []
    pairs = book.keys()  # a sorted list (PriceBook is not a mapping)
    for site, gpu_type in pairs:
        try:
            in_force.append(book.price_at(site, gpu_type, t))
        except AccountingError:  # no price at t (a gap or not yet valid): no rank by price
            continue
    currencies = {p.per_gpu_hour.currency for p in in_force}
    if len(currencies) <= 1:
        unit = next(iter(currencies), "USD")
        return ComparisonPrices(
            unit, {(p.site, p.gpu_type): float(p.per_gpu_hour.amount) for p in in_force}
        )
    day = day_of(t)
    out: dict[tuple[str, str], float] = {}
    missing: list[tuple[str, str]] = []
    for p in in_force:
        currency = p.per_gpu_hour.currency
        try:
            rate = rates.per_usd(currency, day) if rates is not None else None
        except AccountingError:
            rate = None
        if currency == "USD":
            rate = Decimal(1)
        if rate is None:
            missing.append((p.site, p.gpu_type))
            continue
        with localcontext(prec=PRECISION):
            out[(p.site, p.gpu_type)] = float(p.per_gpu_hour.amount / rate)
    return ComparisonPrices("USD", out, tuple(missing))
