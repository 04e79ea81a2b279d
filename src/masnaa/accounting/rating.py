"""Rating: usage records → priced line items. Pure, exact and fast.

A **line item** is the charged GPU-time of one job on one GPU type at one
site under one price, within a rating period ``[start, end)``: GPU-hours,
unit price, list amount, discount, net amount (site currency) and its USD
view. Money rule, applied once per line item:

    gross    = round(per_gpu_hour × charged_gpu_seconds / 3600)
    discount = round(gross × discount_rate)
    net      = gross − discount

so that every line reconciles by hand and a statement's totals are plain sums
of its lines. The USD view is ``round(net / per_usd(fx_day))`` — informative,
at one dated rate per statement; a currency with no rate on ``fx_day`` gets no
USD view (``net_usd`` is ``None``, ``RatingContext.missing_rates`` names the
rate), and its money is rated all the same.

Two paths give identical line items (a test checks it):
- ``rate_records``: the reference, record by record with ``PriceBook.spans``;
- ``aggregate`` + ``price_lines`` (used by ``rate``): one tight loop adds the
  integer GPU-seconds of each record into its group (tenant, project,
  allocation, job, site, GPU type, price period); money is computed only on
  the few thousand groups. Integer sums are exact, and the Decimal math is the
  same per group, so the two paths agree to the last minor unit.

Records are clipped to the rating period, split at price boundaries, and the
preempted-time rule is applied here (never by deleting records).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import HOUR, Instant
from masnaa.accounting.metering import UsageRecord, Window
from masnaa.accounting.money import PRECISION, Money
from masnaa.accounting.prices import (
    DiscountTable,
    ExchangeRates,
    MissingRate,
    Price,
    PriceBook,
    TenantTerms,
)
from masnaa.domain.tenancy import TenantKind

GroupKey = tuple[str, str, str | None, str, str, str, int]
"""(tenant, project, allocation, job, site, gpu_type, price index)."""


@dataclass(frozen=True, slots=True)
class LineItem:
    tenant: str
    tenant_kind: TenantKind
    project: str
    allocation: str | None
    job: str
    site: str
    gpu_type: str
    price: Price
    charged_gpu_seconds: int
    uncharged_gpu_seconds: int
    """Held but not charged (preempted time under the charge policy)."""
    gross: Money
    discount_rate: Decimal
    discount: Money
    net: Money
    net_usd: Money | None

    @property
    def gpu_hours(self) -> Decimal:
        return Decimal(self.charged_gpu_seconds) / HOUR

    @property
    def currency(self) -> str:
        return self.net.currency


@dataclass(frozen=True, slots=True)
class RatingContext:
    prices: PriceBook
    discounts: DiscountTable
    terms: Mapping[str, TenantTerms]
    """tenant → kind and tier."""
    fx: ExchangeRates | None = None
    fx_day: date | None = None
    """The day of the USD view (a statement uses its last day)."""

    def missing_rates(self, currencies: Iterable[str]) -> tuple[MissingRate, ...]:
        """The rates the USD view of ``currencies`` lacks on ``fx_day``, by currency.

        Without any rates (``fx`` is ``None``) there is no USD view at all, so
        nothing is missing."""
        if self.fx is None or self.fx_day is None:
            return ()
        found = (self.fx.missing(c, self.fx_day) for c in sorted(set(currencies)))
        return tuple(m for m in found if m is not None)

    def terms_of(self, tenant: str) -> TenantTerms:
        try:
            return self.terms[tenant]
        except KeyError:
            raise AccountingError(
                "unknown-tenant", f"no kind/tier known for tenant {tenant!r}; register its terms"
            ) from None


Totals = dict[GroupKey, list[int]]
"""group → [charged GPU-seconds, uncharged GPU-seconds]."""


def _uncharged(
    job_windows: Mapping[int, Window] | None, attempt: int, s: Instant, e: Instant
) -> int:
    if job_windows is None:
        return 0
    w = job_windows.get(attempt)
    if w is None:
        return 0
    return max(0, min(e, w[1]) - max(s, w[0]))


def aggregate(
    records: Iterable[UsageRecord],
    period: tuple[Instant, Instant],
    prices: PriceBook,
    windows: Mapping[str, Mapping[int, Window]],
    into: Totals | None = None,
) -> Totals:
    """Integer GPU-seconds per group; the hot loop of rating.

    ``into`` lets a caller feed records in chunks (e.g. from a database
    cursor) into one accumulator.
    """
    ps, pe = period
    acc: Totals = {} if into is None else into
    # site → type → (starts, ends) of price periods, fetched once per pair.
    bounds: dict[str, dict[str, tuple[list[Instant], list[Instant]]]] = {}
    last: GroupKey = ("", "", None, "", "", "", -1)
    t: list[int] = [0, 0]
    for job, attempt, s, e, gpus, gpu_type, site, tenant, project, alloc in records:
        if s < ps:
            s = ps
        if e > pe:
            e = pe
        if e <= s:
            continue
        by_type = bounds.get(site)
        if by_type is None:
            by_type = bounds[site] = {}
        b = by_type.get(gpu_type)
        if b is None:
            starts, plist = prices.boundaries(site, gpu_type)
            b = by_type[gpu_type] = (starts, [p.end for p in plist])
        starts, ends = b
        i = bisect_right(starts, s) - 1
        jw = windows.get(job)
        if i >= 0 and e <= ends[i]:
            u = 0 if jw is None else _uncharged(jw, attempt, s, e)
            # Records of a job usually come one after another: reuse its group.
            if not (
                job == last[3]
                and i == last[6]
                and site == last[4]
                and gpu_type == last[5]
                and alloc == last[2]
                and project == last[1]
                and tenant == last[0]
            ):
                last = (tenant, project, alloc, job, site, gpu_type, i)
                got = acc.get(last)
                if got is None:
                    got = acc[last] = [0, 0]
                t = got
            t[0] += gpus * (e - s - u)
            t[1] += gpus * u
            continue
        # Rare: the record crosses a price boundary (or meets a gap: spans raises).
        for span in prices.spans(site, gpu_type, s, e):
            j = bisect_right(starts, span.start) - 1
            key = (tenant, project, alloc, job, site, gpu_type, j)
            u = _uncharged(jw, attempt, span.start, span.end)
            held = span.end - span.start
            split = acc.setdefault(key, [0, 0])
            split[0] += gpus * (held - u)
            split[1] += gpus * u
    return acc


def rate_records(
    records: Iterable[UsageRecord],
    period: tuple[Instant, Instant],
    ctx: RatingContext,
    windows: Mapping[str, Mapping[int, Window]],
) -> list[LineItem]:
    """Reference path: every record priced on its own, then grouped."""
    acc: Totals = {}
    for r in records:
        s, e = max(r.start, period[0]), min(r.end, period[1])
        if e <= s:
            continue
        for span in ctx.prices.spans(r.site, r.gpu_type, s, e):
            _starts, plist = ctx.prices.boundaries(r.site, r.gpu_type)
            idx = plist.index(span.price)
            w = windows.get(r.job, {}).get(r.attempt)
            lost = 0 if w is None else max(0, min(span.end, w[1]) - max(span.start, w[0]))
            key = (r.tenant, r.project, r.allocation, r.job, r.site, r.gpu_type, idx)
            t = acc.setdefault(key, [0, 0])
            t[0] += r.gpus * (span.end - span.start - lost)
            t[1] += r.gpus * lost
    return price_lines(acc, ctx)


def rate(
    records: Iterable[UsageRecord],
    period: tuple[Instant, Instant],
    ctx: RatingContext,
    windows: Mapping[str, Mapping[int, Window]],
) -> list[LineItem]:
    """Line items for ``period`` (the fast path)."""
    return price_lines(aggregate(records, period, ctx.prices, windows), ctx)


def rate_in_parts(
    records: Iterable[UsageRecord],
    parts: Iterable[tuple[tuple[Instant, Instant], RatingContext]],
    windows: Mapping[str, Mapping[int, Window]],
) -> list[LineItem]:
    """Line items for consecutive periods, each rated under its own context.

    A span over which discounts or tiers change (``terms.TermsBook.cuts``) is rated
    in parts, so a job's time before the change keeps the terms it was used under;
    each part gives its own line items."""
    kept = records if isinstance(records, list) else list(records)
    out: list[LineItem] = []
    for period, ctx in parts:
        out.extend(rate(kept, period, ctx, windows))
    return out


def price_lines(totals: Totals, ctx: RatingContext) -> list[LineItem]:
    """Money for each group, in a stable order (tenant, project, job, site, type, price)."""
    out: list[LineItem] = []
    usd_rates: dict[str, Decimal | None] = {}
    with localcontext(prec=PRECISION):
        for key in sorted(totals, key=lambda k: (k[0], k[1], k[2] or "", k[3], k[4], k[5], k[6])):
            tenant, project, alloc, job, site, gpu_type, idx = key
            charged, uncharged = totals[key]
            price = ctx.prices.boundaries(site, gpu_type)[1][idx]
            terms = ctx.terms_of(tenant)
            rate_ = ctx.discounts.rate_for(terms)
            cur = price.per_gpu_hour.currency
            gross = Money(price.per_gpu_hour.amount * charged / HOUR, cur).rounded()
            discount = (gross * rate_).rounded()
            net = gross - discount
            usd: Money | None = None
            if ctx.fx is not None and ctx.fx_day is not None:
                if cur not in usd_rates:
                    # The USD view is informative: a missing rate leaves it out
                    # (``RatingContext.missing_rates`` says which), never the charge.
                    gap = ctx.fx.missing(cur, ctx.fx_day)
                    usd_rates[cur] = None if gap else ctx.fx.per_usd(cur, ctx.fx_day)
                per_usd = usd_rates[cur]
                if per_usd is not None:
                    usd = Money(net.amount / per_usd, "USD").rounded()
            out.append(
                LineItem(
                    tenant=tenant,
                    tenant_kind=terms.kind,
                    project=project,
                    allocation=alloc,
                    job=job,
                    site=site,
                    gpu_type=gpu_type,
                    price=price,
                    charged_gpu_seconds=charged,
                    uncharged_gpu_seconds=uncharged,
                    gross=gross,
                    discount_rate=rate_,
                    discount=discount,
                    net=net,
                    net_usd=usd,
                )
            )
    return out
