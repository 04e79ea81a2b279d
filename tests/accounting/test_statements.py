import csv
import io
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from acct_builders import H100, L40S, MONTH, T0, context, gateway, policy, rec

from masnaa.accounting import allocations as al
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, HOUR
from masnaa.accounting.money import Money
from masnaa.accounting.prices import ExchangeRate, ExchangeRates
from masnaa.accounting.rating import RatingContext, rate
from masnaa.accounting.statements import (
    build_statements,
    funders_report,
    funders_report_csv,
    operator_report,
    operator_report_csv,
    statement_csv,
    statement_html,
)

TAX = {"MAD": Decimal("0.20"), "ZAR": Decimal("0.15"), "NGN": Decimal("0.075"),
       "KES": Decimal("0.16"), "EGP": Decimal("0.14"), "USD": Decimal(0)}  # fmt: skip


def _lines():  # type: ignore[no-untyped-def]
    records = [
        rec("j1", end=T0 + 3600, tenant="corp", allocation=None),
        rec("j2", end=T0 + 1800, gpus=1, gpu_type=L40S, tenant="corp", allocation=None),
        rec("j3", end=T0 + 3600, site="za-1", tenant="corp", allocation=None),
        rec("j4", end=T0 + 3600, tenant="uni"),
    ]
    return rate(records, MONTH, context(), {})


def test_statement_per_currency_reconciles() -> None:
    mad, zar = build_statements(_lines(), "corp", MONTH, TAX)
    assert (mad.currency, zar.currency) == ("MAD", "ZAR")
    assert [li.job for li in mad.lines] == ["j1", "j2"]
    assert mad.subtotal == Money.of("245.00", "MAD")  # 8 h × 30 + 0.5 h × 10
    assert mad.tax == Money.of("49.00", "MAD")
    assert mad.total == Money.of("294.00", "MAD")
    assert mad.total_usd == Money.of("30.95", "USD")  # 294 / 9.5
    assert zar.total == Money.of("276.00", "ZAR")


def test_statement_csv_is_machine_readable() -> None:
    (mad, _) = build_statements(_lines(), "corp", MONTH, TAX)
    rows = list(csv.reader(io.StringIO(statement_csv(mad))))
    header = rows[1]
    items = [dict(zip(header, r, strict=True)) for r in rows[2:4]]
    assert items[0]["job"] == "j1" and items[0]["gpu_hours"] == "8.0000"
    assert sum(Decimal(i["net"]) for i in items) == mad.subtotal.amount
    summary = {r[0]: r[1] for r in rows[4:]}
    assert summary["# total"] == "294.00" and summary["# tax_rate"] == "0.20"


@pytest.mark.parametrize(
    ("locale", "needles"),
    [
        ("en", ['lang="en" dir="ltr"', "Statement", "MAD294.00", "8.00"]),
        ("fr", ['dir="ltr"', "Relevé", "294,00", "MAD"]),
        ("ar", ['lang="ar" dir="rtl"', "كشف حساب", "د.م."]),
    ],
)
def test_statement_html_per_locale(locale: str, needles: list[str]) -> None:
    (mad, _) = build_statements(_lines(), "corp", MONTH, TAX)
    page = statement_html(mad, locale)
    for n in needles:
        assert n in page, n


def _without_kes() -> RatingContext:
    """Rates for MAD and ZAR only (``acct_builders.fx`` minus KES)."""
    rates = ExchangeRates([
        ExchangeRate(date(2026, 11, 1), "MAD", Decimal("9.5")),
        ExchangeRate(date(2026, 11, 1), "ZAR", Decimal("18")),
    ])  # fmt: skip
    return replace(context(), fx=rates)


def test_a_missing_rate_empties_the_usd_view_and_keeps_the_money() -> None:
    records = [rec("j1", tenant="corp", allocation=None),
               rec("j2", site="ke-1", tenant="corp", allocation=None)]  # fmt: skip
    ctx = _without_kes()
    lines = rate(records, MONTH, ctx, {})
    kes, mad = build_statements(lines, "corp", MONTH, TAX, ctx.missing_rates(
        li.currency for li in lines))  # fmt: skip
    full_kes, full_mad = build_statements(rate(records, MONTH, context(), {}), "corp", MONTH, TAX)
    assert (mad.total_usd, mad.missing_rates) == (full_mad.total_usd, ())
    assert kes.total == full_kes.total == Money.of("278.40", "KES")  # 240 + 16 % tax
    assert (kes.subtotal, kes.tax) == (full_kes.subtotal, full_kes.tax)
    assert kes.total_usd is None and [li.net_usd for li in kes.lines] == [None]
    assert [(g.currency, g.day) for g in kes.missing_rates] == [("KES", date(2026, 11, 30))]
    rows = list(csv.reader(io.StringIO(statement_csv(kes))))
    assert rows[2][rows[1].index("net_usd")] == "—"
    summary = {r[0]: r[1:] for r in rows if r[0].startswith("#")}
    assert summary["# total"] == ["278.40", "KES"] and summary["# total_usd"] == ["—", "USD"]
    assert summary["# missing_exchange_rate"][:2] == ["KES", "2026-11-30"]
    assert "# missing_exchange_rate" not in statement_csv(mad)
    for locale, words in (("en", "No KES/USD"), ("fr", "Aucun taux"), ("ar", "لا يوجد سعر صرف")):
        page = statement_html(kes, locale)
        assert words in page and "—" in page, locale
        assert words not in statement_html(mad, locale)


def test_without_any_rates_there_is_no_usd_view_and_nothing_is_missing() -> None:
    ctx = replace(context(), fx=None, fx_day=None)
    lines = rate([rec("j1", site="ke-1", tenant="corp", allocation=None)], MONTH, ctx, {})
    (kes,) = build_statements(lines, "corp", MONTH, TAX, ctx.missing_rates(["KES"]))
    assert (kes.total_usd, kes.missing_rates) == (None, ())
    text = statement_csv(kes)
    assert "—" not in text and "# total_usd" not in text


def test_operator_report_names_the_missing_rate_on_its_rows() -> None:
    records = [rec("j1", tenant="corp", allocation=None),
               rec("j2", site="ke-1", tenant="corp", allocation=None)]  # fmt: skip
    ctx = _without_kes()
    lines = rate(records, MONTH, ctx, {})
    ke, ma = operator_report(lines, {}, MONTH, ctx.missing_rates(li.currency for li in lines))
    assert (ke.site, ke.net, ke.net_usd) == ("ke-1", Money.of("240.00", "KES"), None)
    assert ke.missing_rate is not None and ke.missing_rate.currency == "KES"
    assert ma.net_usd is not None and ma.missing_rate is None
    rows = list(csv.DictReader(io.StringIO(operator_report_csv([ke, ma]))))
    assert [r["revenue_usd"] for r in rows] == ["—", str(ma.net_usd.amount)]


def test_html_escapes_names() -> None:
    lines = rate([rec("<script>", tenant="corp")], MONTH, context(), {})
    (st,) = build_statements(lines, "corp", MONTH, TAX)
    assert "<script>" not in statement_html(st) and "&lt;script&gt;" in statement_html(st)


def test_statement_errors() -> None:
    with pytest.raises(AccountingError) as err:
        build_statements(_lines(), "corp", MONTH, {"MAD": Decimal("0.2")})
    assert err.value.code == "no-tax-rate"
    (mad, _) = build_statements(_lines(), "corp", MONTH, TAX)
    with pytest.raises(AccountingError) as err:
        statement_html(mad, "de")
    assert err.value.code == "unknown-locale"


def test_operator_report_groups_and_utilisation() -> None:
    rows = operator_report(_lines(), {("ma-1", H100): 16, ("ma-1", L40S): 8}, MONTH)
    by = {(r.site, r.gpu_type, r.tenant_kind): r for r in rows}
    corp = by[("ma-1", H100, "enterprise")]
    uni = by[("ma-1", H100, "university")]
    assert corp.charged_gpu_seconds == 8 * HOUR and corp.net == Money.of("240.00", "MAD")
    assert uni.net == Money.of("96.00", "MAD")
    month_s = MONTH[1] - MONTH[0]
    assert corp.utilisation == uni.utilisation == (
        Decimal(16 * HOUR) / (16 * month_s)).quantize(Decimal("0.0001"))  # fmt: skip
    assert by[("za-1", H100, "enterprise")].utilisation is None  # capacity not given
    text = operator_report_csv(rows)
    assert text.splitlines()[0].startswith("site,gpu_type,tenant_kind,gpu_hours")
    assert len(text.splitlines()) == 1 + len(rows)


def test_funders_report_burn_rate_and_projection() -> None:
    a = gateway("a1", h=1000)  # 60 days from 1 Nov
    b = gateway("a2", project="p2", h=1000)
    # a1 burns 8 GPU-hours a day for 10 days.
    records = [rec(start=T0 + d * DAY, end=T0 + d * DAY + HOUR) for d in range(10)]
    now = T0 + 10 * DAY
    rows = funders_report([a, b], policy(), "research", records, {}, now, burn_window_days=10)
    r1, r2 = rows
    assert r1.used_gpu_seconds == 80 * HOUR and r1.remaining_gpu_seconds == 920 * HOUR
    assert r1.burn_gpu_seconds_per_day == 8 * HOUR
    assert r1.projected_exhaustion is None  # 115 more days: after expiry, the rest lapses
    assert r2.burn_gpu_seconds_per_day == 0 and r2.projected_exhaustion is None
    # With a faster burn the exhaustion falls inside the allocation's life.
    fast = [rec(start=T0 + d * DAY, end=T0 + d * DAY + 10 * HOUR) for d in range(10)]
    (f1, _) = funders_report([a, b], policy(), "research", fast, {}, now, burn_window_days=10)
    assert f1.projected_exhaustion == date(2026, 11, 13)  # 11 Nov + 200 h at 80 h/day
    expired = al.settle(al.settle(a, T0, {}), now + 60 * DAY, {("ma-1", H100): 800 * HOUR})
    (e1, _) = funders_report([expired, b], policy(), "research", fast, {}, now + 60 * DAY)
    assert e1.lapsed_gpu_seconds == 200 * HOUR and e1.remaining_gpu_seconds == 0
    assert funders_report([a], policy(), "commercial", records, {}, now) == []
    csv_text = funders_report_csv(rows)
    assert "a1,p1,gateway,awarded,1000.0000,1000.0000,80.0000,0.0000,920.0000" in csv_text
