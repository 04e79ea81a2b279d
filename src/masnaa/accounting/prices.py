"""Price lists, discounts and dated exchange rates: the data rating reads.

Terms:
- a **price** is what one GPU-hour of a GPU type costs at a site, in the
  site's currency, valid over ``[valid_from, valid_to)`` (UTC dates;
  ``valid_to=None``: open-ended);
- a **discount** is a fraction taken off for a tenant kind and, optionally, a
  tier within that kind (start-ups have tiers: seed, growth, scale);
- an **exchange rate** is how many units of a currency one US dollar buys on a
  date; the USD view of an amount uses the latest rate on or before its date.

Invariants enforced at construction (``PriceBook``, ``DiscountTable``,
``ExchangeRates``), each with its own error code:
- prices are ≥ 0 (``negative-price``) and in their site's currency
  (``currency-mismatch``); periods are non-empty (``empty-period``);
- no two prices of the same site, GPU type and currency overlap in time
  (``overlapping-price``), so the price at any instant is unique;
- discounts lie in [0, 1] (``bad-discount``); rates are > 0 (``bad-rate``).

Every figure here is an operator setting; the defaults are illustrations.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext

from masnaa.accounting.errors import AccountingError, CurrencyMismatch
from masnaa.accounting.instants import Instant, at, day_of
from masnaa.accounting.money import PRECISION, Money, check_currency, to_decimal
from masnaa.domain.tenancy import TenantKind

FOREVER: Instant = 2**62
"""The end of an open-ended period."""


@dataclass(frozen=True, slots=True)
class Price:
    """One GPU-hour of ``gpu_type`` at ``site`` costs ``per_gpu_hour`` over
    ``[valid_from, valid_to)``."""

    site: str
    gpu_type: str
    per_gpu_hour: Money
    valid_from: date
    valid_to: date | None = None

    @property
    def start(self) -> Instant:
        return at(self.valid_from)

    @property
    def end(self) -> Instant:
        return FOREVER if self.valid_to is None else at(self.valid_to)


@dataclass(frozen=True, slots=True)
class PricedSpan:
    """A sub-interval ``[start, end)`` over which one price applies."""

    start: Instant
    end: Instant
    price: Price


class PriceBook:
    """All prices, validated, indexed per (site, GPU type) for lookup by instant."""

    def __init__(self, prices: Iterable[Price], site_currencies: Mapping[str, str]) -> None:
        self.site_currencies = dict(site_currencies)
        by_key: dict[tuple[str, str], list[Price]] = {}
        for p in prices:
            self._validate(p)
            by_key.setdefault((p.site, p.gpu_type), []).append(p)
        self._starts: dict[tuple[str, str], list[Instant]] = {}
        self._prices: dict[tuple[str, str], list[Price]] = {}
        for key, plist in by_key.items():
            plist.sort(key=lambda p: p.start)
            for a, b in itertools.pairwise(plist):
                if b.start < a.end:
                    raise AccountingError(
                        "overlapping-price",
                        f"prices for {key[1]} at {key[0]} overlap: [{a.valid_from}, "
                        f"{a.valid_to or '…'}) and [{b.valid_from}, {b.valid_to or '…'}); "
                        f"end the first on or before {b.valid_from}",
                    )
            self._prices[key] = plist
            self._starts[key] = [p.start for p in plist]

    def _validate(self, p: Price) -> None:
        if p.site not in self.site_currencies:
            raise AccountingError(
                "unknown-site",
                f"price for unknown site {p.site!r}; known sites: {sorted(self.site_currencies)}",
            )
        want = self.site_currencies[p.site]
        if p.per_gpu_hour.currency != want:
            raise CurrencyMismatch(
                f"price for {p.gpu_type} at {p.site} is in {p.per_gpu_hour.currency}, but the "
                f"site bills in {want}; state the price in {want}"
            )
        if p.per_gpu_hour.amount < 0:
            raise AccountingError(
                "negative-price",
                f"price for {p.gpu_type} at {p.site} from {p.valid_from} is "
                f"{p.per_gpu_hour.amount}; a price must be ≥ 0",
            )
        if p.valid_to is not None and p.valid_to <= p.valid_from:
            raise AccountingError(
                "empty-period",
                f"price for {p.gpu_type} at {p.site} is valid from {p.valid_from} to "
                f"{p.valid_to}; the end must be after the start",
            )

    def keys(self) -> list[tuple[str, str]]:
        return sorted(self._prices)

    def currency(self, site: str) -> str:
        try:
            return self.site_currencies[site]
        except KeyError:
            raise AccountingError("unknown-site", f"no currency known for site {site!r}") from None

    def price_at(self, site: str, gpu_type: str, t: Instant) -> Price:
        """The price in force at instant ``t``, or ``no-price``."""
        key = (site, gpu_type)
        starts = self._starts.get(key)
        if starts:
            i = bisect.bisect_right(starts, t) - 1
            if i >= 0 and t < self._prices[key][i].end:
                return self._prices[key][i]
        raise AccountingError(
            "no-price",
            f"no price for {gpu_type} at {site} on {day_of(t)}; add a price list covering it",
        )

    def spans(self, site: str, gpu_type: str, start: Instant, end: Instant) -> list[PricedSpan]:
        """Split ``[start, end)`` at price boundaries; raises ``no-price`` on a gap."""
        out: list[PricedSpan] = []
        t = start
        while t < end:
            p = self.price_at(site, gpu_type, t)
            e = min(end, p.end)
            out.append(PricedSpan(t, e, p))
            t = e
        return out

    def boundaries(self, site: str, gpu_type: str) -> tuple[list[Instant], list[Price]]:
        """Sorted starts and their prices (for the aggregated rating path)."""
        key = (site, gpu_type)
        return self._starts.get(key, []), self._prices.get(key, [])


# ---------------------------------------------------------------- discounts


@dataclass(frozen=True, slots=True)
class Discount:
    """``rate`` (a fraction in [0, 1]) off list price for ``kind`` and ``tier``
    (``tier=None``: every tier of that kind without a more specific row)."""

    kind: TenantKind
    rate: Decimal
    tier: str | None = None


@dataclass(frozen=True, slots=True)
class TenantTerms:
    """What rating needs to know about a tenant: its kind and discount tier."""

    kind: TenantKind
    tier: str | None = None


class DiscountTable:
    def __init__(self, discounts: Iterable[Discount]) -> None:
        self._rates: dict[tuple[TenantKind, str | None], Decimal] = {}
        for d in discounts:
            rate = to_decimal(d.rate)
            if not Decimal(0) <= rate <= Decimal(1):
                raise AccountingError(
                    "bad-discount",
                    f"discount for {d.kind}/{d.tier or '*'} is {rate}; use a fraction in [0, 1]",
                )
            key = (d.kind, d.tier)
            if key in self._rates:
                raise AccountingError(
                    "duplicate-discount", f"two discounts for {d.kind}/{d.tier or '*'}; keep one"
                )
            self._rates[key] = rate

    def rate_for(self, terms: TenantTerms) -> Decimal:
        """The most specific row: (kind, tier), then (kind, any tier), else 0."""
        r = self._rates.get((terms.kind, terms.tier))
        if r is None:
            r = self._rates.get((terms.kind, None), Decimal(0))
        return r


DEFAULT_DISCOUNTS: tuple[Discount, ...] = (
    # Illustrative defaults for an operator to replace. The reference facts say
    # only that access is "tiered discounts for NGOs and start-ups through a
    # points system" (shared/reference/README.md, "The factories"); the rates
    # below are not published figures.
    Discount(TenantKind.UNIVERSITY, Decimal("0.60")),
    Discount(TenantKind.RESEARCH_INSTITUTE, Decimal("0.60")),
    Discount(TenantKind.NGO, Decimal("0.50")),
    Discount(TenantKind.PUBLIC_BODY, Decimal("0.30")),
    Discount(TenantKind.STARTUP, Decimal("0.40"), tier="seed"),
    Discount(TenantKind.STARTUP, Decimal("0.25"), tier="growth"),
    Discount(TenantKind.STARTUP, Decimal("0.10"), tier="scale"),
    Discount(TenantKind.STARTUP, Decimal("0.10")),
    Discount(TenantKind.ENTERPRISE, Decimal("0")),
)

REFERENCE_USD_PER_GPU_HOUR: Mapping[str, Decimal] = {
    # Default list prices in USD, set below the 2025–26 on-demand H100 market
    # (AWS 6.88, CoreWeave ~6.16, Nebius 3.85, Lambda 3.99–4.29, RunPod
    # 2.69–3.99, Vast ~2.40; shared/reference/README.md, "Prices"). Other types
    # are scaled from H100 by rough market ratios. Operator settings.
    "h100-sxm-80gb": Decimal("3.00"),
    "h200": Decimal("3.60"),
    "b200": Decimal("5.00"),
    "a100-80gb": Decimal("1.80"),
    "l40s": Decimal("1.00"),
}


# ----------------------------------------------------------- exchange rates


@dataclass(frozen=True, slots=True)
class ExchangeRate:
    """On ``day``, one US dollar buys ``per_usd`` units of ``currency``."""

    day: date
    currency: str
    per_usd: Decimal


@dataclass(frozen=True, slots=True)
class MissingRate:
    """No ``currency``/USD rate applies on ``day``: none on or before it (``first``:
    the earliest rate of that currency, later than ``day``, if there is one)."""

    currency: str
    day: date
    first: date | None = None

    @property
    def message(self) -> str:
        later = f" (the first is on {self.first})" if self.first else ""
        return (
            f"no {self.currency}/USD rate on or before {self.day}{later}; add a rate dated "
            f"{self.day} or earlier"
        )


class ExchangeRates:
    """Dated rates; the rate for a date is the latest on or before it."""

    def __init__(self, rates: Iterable[ExchangeRate]) -> None:
        by_cur: dict[str, dict[date, Decimal]] = {}
        for r in rates:
            check_currency(r.currency)
            rate = to_decimal(r.per_usd)
            if rate <= 0:
                raise AccountingError(
                    "bad-rate", f"rate for {r.currency} on {r.day} is {rate}; it must be > 0"
                )
            days = by_cur.setdefault(r.currency, {})
            if r.day in days and days[r.day] != rate:
                raise AccountingError(
                    "duplicate-rate",
                    f"two different rates for {r.currency} on {r.day}; keep one",
                )
            days[r.day] = rate
        self._days = {c: sorted(d) for c, d in by_cur.items()}
        self._rates = {c: [by_cur[c][d] for d in self._days[c]] for c in by_cur}

    def missing(self, currency: str, day: date) -> MissingRate | None:
        """What is missing to convert ``currency`` on ``day``; ``None`` if a rate applies."""
        if currency == "USD":
            return None
        days = self._days.get(currency, [])
        if bisect.bisect_right(days, day) > 0:
            return None
        return MissingRate(currency, day, days[0] if days else None)

    def per_usd(self, currency: str, day: date) -> Decimal:
        gap = self.missing(currency, day)
        if gap is not None:
            raise AccountingError("no-exchange-rate", gap.message)
        if currency == "USD":
            return Decimal(1)
        days = self._days[currency]
        return self._rates[currency][bisect.bisect_right(days, day) - 1]

    def to_usd(self, amount: Money, day: date) -> Money:
        """The unrounded USD value of ``amount`` at the rate of ``day``."""
        rate = self.per_usd(amount.currency, day)
        with localcontext(prec=PRECISION):
            return Money(amount.amount / rate, "USD")


def price_list_from_usd(
    usd_per_gpu_hour: Mapping[str, Decimal],
    site_currencies: Mapping[str, str],
    rates: ExchangeRates,
    valid_from: date,
    valid_to: date | None = None,
) -> list[Price]:
    """Local-currency prices for every site and type from USD list prices at
    the rate of ``valid_from``, rounded to the local minor unit (a convenience
    for an operator's first price list; the result is ordinary data)."""
    out = []
    for site, cur in sorted(site_currencies.items()):
        rate = rates.per_usd(cur, valid_from)
        for gpu_type, usd in sorted(usd_per_gpu_hour.items()):
            local = Money(to_decimal(usd) * rate, cur).rounded()
            out.append(Price(site, gpu_type, local, valid_from, valid_to))
    return out
