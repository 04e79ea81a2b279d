"""Statements and reports: pure functions from line items to tables and text.

- a **statement** is what one tenant owes for a period in one currency (one
  per site currency it used): its line items (one per job × GPU type × site ×
  price), gross, discount, net subtotal, tax at a configurable rate per
  currency (the site's country's rate) and total. Tax is rounded once, on the
  subtotal. A statement reconciles exactly: subtotal = Σ line nets, total =
  subtotal + tax;
- the **operator report** sums charged GPU-hours, uncharged (preempted)
  GPU-hours and revenue by site, GPU type and tenant kind, with the
  utilisation of each site × GPU type (held GPU-seconds / capacity);
- the **funders' report** lists, for the allocations of a grant programme,
  GPU-hours awarded, released, used, lapsed and left, the burn rate over a
  trailing window and the projected exhaustion date.

Renderers return strings (CSV, HTML); writing files is the caller's job.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from html import escape

from babel.numbers import format_decimal, format_percent

from masnaa.accounting.allocation import Allocation, AllocationPolicy, State
from masnaa.accounting.balance import overdraft, remaining, used_by_allocation
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, HOUR, Instant, day_of, iso
from masnaa.accounting.metering import UsageRecord, Window, charged_seconds
from masnaa.accounting.money import Money, to_decimal
from masnaa.accounting.prices import MissingRate
from masnaa.accounting.rating import LineItem

# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Statement:
    tenant: str
    period: tuple[Instant, Instant]
    currency: str
    lines: tuple[LineItem, ...]
    tax_rate: Decimal
    gross: Money
    discount: Money
    subtotal: Money
    tax: Money
    total: Money
    total_usd: Money | None
    missing_rates: tuple[MissingRate, ...] = ()
    """The exchange rates its USD view lacks: then ``total_usd`` and the lines'
    ``net_usd`` are ``None``, and the amounts in ``currency`` are unchanged."""

    @property
    def charged_gpu_seconds(self) -> int:
        return sum(li.charged_gpu_seconds for li in self.lines)


def build_statements(
    lines: Iterable[LineItem],
    tenant: str,
    period: tuple[Instant, Instant],
    tax_rates: Mapping[str, Decimal],
    missing_rates: Iterable[MissingRate] = (),
) -> list[Statement]:
    """One statement per currency for ``tenant``; ``tax_rates``: currency → rate;
    ``missing_rates``: the exchange rates rating lacked (``RatingContext.missing_rates``),
    each told on the statement of its currency."""
    gaps: dict[str, list[MissingRate]] = {}
    for gap in missing_rates:
        gaps.setdefault(gap.currency, []).append(gap)
    by_cur: dict[str, list[LineItem]] = {}
    for li in lines:
        if li.tenant == tenant:
            by_cur.setdefault(li.currency, []).append(li)
    out = []
    for cur in sorted(by_cur):
        ls = tuple(by_cur[cur])
        if cur not in tax_rates:
            raise AccountingError(
                "no-tax-rate", f"no tax rate for {cur}; set one (0 if no tax applies)"
            )
        rate = to_decimal(tax_rates[cur])
        if rate < 0:
            raise AccountingError("bad-tax-rate", f"tax rate for {cur} is {rate}; use ≥ 0")
        gross = sum((li.gross for li in ls), Money.zero(cur))
        disc = sum((li.discount for li in ls), Money.zero(cur))
        sub = sum((li.net for li in ls), Money.zero(cur))
        tax = (sub * rate).rounded()
        usd_lines = [li.net_usd for li in ls]
        usd = None
        if all(u is not None for u in usd_lines):
            usd = sum((u for u in usd_lines if u is not None), Money.zero("USD"))
            if sub.amount:
                usd = usd + Money((tax.amount * usd.amount / sub.amount), "USD")
            usd = usd.rounded()
        out.append(
            Statement(
                tenant, period, cur, ls, rate, gross, disc, sub, tax, sub + tax, usd,
                tuple(gaps.get(cur, ())),
            )
        )  # fmt: skip
    return out


_COLUMNS = (
    "job", "project", "allocation", "site", "gpu_type", "price_from", "gpu_hours",
    "uncharged_gpu_hours", "unit_price", "gross", "discount_rate", "discount", "net",
    "currency", "net_usd",
)  # fmt: skip


NO_FIGURE = "—"
"""Written for a USD figure that a missing exchange rate leaves out (an empty cell
means there is no USD view at all: no rates were ever set)."""


def _usd(m: Money | None, missing: bool) -> object:
    if m is not None:
        return m.amount
    return NO_FIGURE if missing else ""


def _hours(seconds: int) -> str:
    return str((Decimal(seconds) / HOUR).quantize(Decimal("0.0001")))


def statement_csv(st: Statement) -> str:
    """Line items, then summary rows; machine-readable (``.`` decimals, ISO dates)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["# statement", st.tenant, iso(st.period[0]), iso(st.period[1]), st.currency])
    w.writerow(_COLUMNS)
    for li in st.lines:
        w.writerow([
            li.job, li.project, li.allocation or "", li.site, li.gpu_type,
            li.price.valid_from.isoformat(), _hours(li.charged_gpu_seconds),
            _hours(li.uncharged_gpu_seconds), li.price.per_gpu_hour.amount, li.gross.amount,
            li.discount_rate, li.discount.amount, li.net.amount, li.currency,
            _usd(li.net_usd, bool(st.missing_rates)),
        ])  # fmt: skip
    for label, m in (
        ("gross", st.gross), ("discount", st.discount), ("subtotal", st.subtotal),
        ("tax", st.tax), ("total", st.total),
    ):  # fmt: skip
        w.writerow([f"# {label}", m.amount, m.currency])
    w.writerow(["# tax_rate", st.tax_rate])
    if st.total_usd is not None or st.missing_rates:
        w.writerow(["# total_usd", _usd(st.total_usd, True), "USD"])
    for gap in st.missing_rates:
        w.writerow(["# missing_exchange_rate", gap.currency, gap.day.isoformat(), gap.message])
    return buf.getvalue()


_LABELS = {
    "en": ("Statement", "Job", "GPU type", "Site", "GPU-hours", "Unit price", "Discount", "Amount",
           "Subtotal", "Tax", "Total", "USD view"),
    "fr": ("Relevé", "Tâche", "Type de GPU", "Site", "Heures GPU", "Prix unitaire", "Remise",
           "Montant", "Sous-total", "Taxe", "Total", "Équivalent USD"),
    "ar": ("كشف حساب", "المهمة", "نوع المعالج", "الموقع", "ساعات المعالج", "سعر الوحدة", "الخصم",
           "المبلغ", "المجموع الفرعي", "الضريبة", "المجموع", "بالدولار"),
}  # fmt: skip

_NO_RATE = {
    "en": "No {currency}/USD exchange rate on or before {day}: the USD view needs one.",
    "fr": "Aucun taux de change {currency}/USD au {day} ou avant : l’équivalent USD en demande un.",
    "ar": "لا يوجد سعر صرف {currency}/USD في {day} أو قبله: يحتاجه العرض بالدولار.",
}


def statement_html(st: Statement, locale: str = "en") -> str:
    """A self-contained HTML page; numbers and money written per ``locale``
    (en, fr or ar; ar is right-to-left)."""
    lang = locale.split("_")[0]
    if lang not in _LABELS:
        raise AccountingError(
            "unknown-locale", f"no statement labels for {locale!r}; use en, fr or ar"
        )
    (title, c_job, c_type, c_site, c_hours, c_unit, c_disc, c_amount, c_sub, c_tax, c_total,
     c_usd) = _LABELS[lang]  # fmt: skip
    d = "rtl" if lang == "ar" else "ltr"
    e = escape
    rows = []
    for li in st.lines:
        hours = format_decimal(li.gpu_hours, format="#,##0.00", locale=locale)
        rows.append(
            "<tr>"
            f"<td>{e(li.job)}</td><td>{e(li.gpu_type)}</td><td>{e(li.site)}</td>"
            f'<td class="n">{e(hours)}</td>'
            f'<td class="n">{e(li.price.per_gpu_hour.format(locale))}</td>'
            f'<td class="n">{e(format_percent(li.discount_rate, locale=locale))}</td>'
            f'<td class="n">{e(li.net.format(locale))}</td>'
            "</tr>"
        )
    period = f"{day_of(st.period[0]).isoformat()} – {day_of(st.period[1] - 1).isoformat()}"
    foot = [
        (c_sub, st.subtotal.format(locale)),
        (f"{c_tax} ({format_percent(st.tax_rate, locale=locale)})", st.tax.format(locale)),
        (c_total, st.total.format(locale)),
    ]
    if st.total_usd is not None:
        foot.append((c_usd, st.total_usd.format(locale)))
    elif st.missing_rates:
        foot.append((c_usd, NO_FIGURE))
    foot_html = "".join(
        f'<tr><th colspan="6">{e(k)}</th><td class="n">{e(v)}</td></tr>' for k, v in foot
    )
    notes = "".join(
        f'<p class="missing-rate">'
        f"{e(_NO_RATE[lang].format(currency=g.currency, day=g.day.isoformat()))}</p>"
        for g in st.missing_rates
    )
    return (
        f'<!doctype html>\n<html lang="{e(lang)}" dir="{d}"><head><meta charset="utf-8">'
        f"<title>{e(title)} {e(st.tenant)}</title>"
        "<style>table{border-collapse:collapse}td,th{padding:2px 8px}.n{text-align:end}</style>"
        f"</head><body><h1>{e(title)}: {e(st.tenant)}</h1><p>{e(period)} · {e(st.currency)}</p>"
        f"<table><thead><tr><th>{e(c_job)}</th><th>{e(c_type)}</th><th>{e(c_site)}</th>"
        f"<th>{e(c_hours)}</th><th>{e(c_unit)}</th><th>{e(c_disc)}</th><th>{e(c_amount)}</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody><tfoot>{foot_html}</tfoot></table>"
        f"{notes}</body></html>\n"
    )


# ------------------------------------------------------------ operator report


@dataclass(frozen=True, slots=True)
class OperatorRow:
    site: str
    gpu_type: str
    tenant_kind: str
    charged_gpu_seconds: int
    uncharged_gpu_seconds: int
    net: Money
    net_usd: Money | None
    utilisation: Decimal | None
    """Held GPU-seconds of the whole site × type (all kinds) / capacity."""
    missing_rate: MissingRate | None = None
    """The exchange rate ``net_usd`` lacks (then ``None``), if one was missing."""


def operator_report(
    lines: Iterable[LineItem],
    capacity: Mapping[tuple[str, str], int],
    period: tuple[Instant, Instant],
    missing_rates: Iterable[MissingRate] = (),
) -> list[OperatorRow]:
    """Revenue and utilisation by site, GPU type and tenant kind.

    ``capacity``: (site, GPU type) → GPUs installed during the period;
    ``missing_rates``: the exchange rates rating lacked, named on the rows of their currency.
    """
    gaps = {g.currency: g for g in missing_rates}
    seconds = period[1] - period[0]
    groups: dict[tuple[str, str, str], list[LineItem]] = {}
    held: dict[tuple[str, str], int] = {}
    for li in lines:
        groups.setdefault((li.site, li.gpu_type, str(li.tenant_kind)), []).append(li)
        k = (li.site, li.gpu_type)
        held[k] = held.get(k, 0) + li.charged_gpu_seconds + li.uncharged_gpu_seconds
    out = []
    for (site, gpu_type, kind), ls in sorted(groups.items()):
        cur = ls[0].currency
        usd: Money | None = Money.zero("USD")
        for li in ls:
            usd = None if usd is None or li.net_usd is None else usd + li.net_usd
        gpus = capacity.get((site, gpu_type))
        util = Decimal(held[(site, gpu_type)]) / (gpus * seconds) if gpus and seconds > 0 else None
        out.append(
            OperatorRow(
                site, gpu_type, kind,
                sum(li.charged_gpu_seconds for li in ls),
                sum(li.uncharged_gpu_seconds for li in ls),
                sum((li.net for li in ls), Money.zero(cur)), usd,
                None if util is None else util.quantize(Decimal("0.0001")),
                gaps.get(cur),
            )
        )  # fmt: skip
    return out


def operator_report_csv(rows: Iterable[OperatorRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["site", "gpu_type", "tenant_kind", "gpu_hours", "uncharged_gpu_hours", "revenue",
                "currency", "revenue_usd", "site_type_utilisation"])  # fmt: skip
    for r in rows:
        w.writerow([
            r.site, r.gpu_type, r.tenant_kind, _hours(r.charged_gpu_seconds),
            _hours(r.uncharged_gpu_seconds), r.net.amount, r.net.currency,
            _usd(r.net_usd, r.missing_rate is not None),
            "" if r.utilisation is None else r.utilisation,
        ])  # fmt: skip
    return buf.getvalue()


# -------------------------------------------------------------- funders' report


@dataclass(frozen=True, slots=True)
class FunderRow:
    allocation: str
    project: str
    tier: str
    state: State
    awarded_gpu_seconds: int
    released_gpu_seconds: int
    used_gpu_seconds: int
    lapsed_gpu_seconds: int
    remaining_gpu_seconds: int
    overdraft_gpu_seconds: int
    burn_gpu_seconds_per_day: Decimal
    projected_exhaustion: date | None
    """When the released GPU-time runs out at the current burn rate; ``None``
    with no burn, or when it would come after the expiry (the rest lapses)."""
    expires: date


def funders_report(
    allocations: Iterable[Allocation],
    policy: AllocationPolicy,
    programme: str,
    records: Iterable[UsageRecord],
    windows: Mapping[str, Mapping[int, Window]],
    now: Instant,
    burn_window_days: int = 30,
) -> list[FunderRow]:
    if burn_window_days <= 0:
        raise AccountingError("bad-window", f"burn window must be > 0 days, got {burn_window_days}")
    allocs = [a for a in allocations if policy.tier(a.tier).programme == programme]
    ids = {a.id for a in allocs}
    recs = [r for r in records if r.allocation in ids and r.start < now]
    used = used_by_allocation(recs, windows)
    lo = now - burn_window_days * DAY
    recent: dict[str, int] = {}
    for r in recs:
        s, e = max(r.start, lo), min(r.end, now)
        if e <= s:
            continue
        clipped = r._replace(start=s, end=e)
        recent[r.allocation or ""] = recent.get(r.allocation or "", 0) + charged_seconds(
            clipped, windows
        )
    out = []
    for a in sorted(allocs, key=lambda a: a.id):
        u = used.get(a.id, {})
        left = sum(max(0, v) for v in remaining(a, u).values())
        burn = Decimal(recent.get(a.id, 0)) / burn_window_days
        proj: date | None = None
        if burn > 0 and a.state not in (State.EXPIRED, State.CLOSED):
            at_ = now + int(Decimal(left) / burn * DAY)
            proj = day_of(at_) if at_ < a.expires_at else None
        out.append(
            FunderRow(
                a.id, a.project, a.tier, a.state, a.awarded_total_seconds(),
                sum(a.released().values()), sum(u.values()), a.lapsed_gpu_seconds,
                0 if a.state in (State.EXPIRED, State.CLOSED) else left, overdraft(a, u),
                burn.quantize(Decimal(1)), proj, a.expires,
            )
        )  # fmt: skip
    return out


def funders_report_csv(rows: Iterable[FunderRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["allocation", "project", "tier", "state", "awarded_gpu_hours",
                "released_gpu_hours", "used_gpu_hours", "lapsed_gpu_hours", "remaining_gpu_hours",
                "overdraft_gpu_hours", "burn_gpu_hours_per_day", "projected_exhaustion",
                "expires"])  # fmt: skip
    for r in rows:
        w.writerow([
            r.allocation, r.project, r.tier, r.state, _hours(r.awarded_gpu_seconds),
            _hours(r.released_gpu_seconds), _hours(r.used_gpu_seconds),
            _hours(r.lapsed_gpu_seconds), _hours(r.remaining_gpu_seconds),
            _hours(r.overdraft_gpu_seconds),
            (r.burn_gpu_seconds_per_day / HOUR).quantize(Decimal("0.01")),
            "" if r.projected_exhaustion is None else r.projected_exhaustion.isoformat(),
            r.expires.isoformat(),
        ])  # fmt: skip
    return buf.getvalue()
