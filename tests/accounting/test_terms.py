"""Dated terms (``accounting.terms``) and rating across a change of terms."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal

import pytest
from acct_builders import DEC, NOV, context, rec

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import HOUR, at
from masnaa.accounting.prices import Discount, DiscountTable, TenantTerms
from masnaa.accounting.rating import rate, rate_in_parts
from masnaa.accounting.terms import Dated, TermsBook
from masnaa.domain.tenancy import TenantKind

JAN = date(2027, 1, 1)
UNI = TenantKind.UNIVERSITY


def _table(rate_: str, **tiers: str) -> DiscountTable:
    rows = [Discount(UNI, Decimal(rate_))]
    rows += [Discount(UNI, Decimal(r), tier) for tier, r in tiers.items()]
    return DiscountTable(rows)


def _book(
    discounts: Iterable[tuple[date, DiscountTable]] = (),
    taxes: Iterable[tuple[date, Mapping[str, Decimal]]] = (),
    tiers: Iterable[tuple[date, str | None]] = (),
) -> TermsBook:
    return TermsBook(Dated(discounts), Dated(taxes), {"uni": Dated(tiers)}, {"uni": UNI})


def test_a_version_is_in_force_from_its_month_until_the_next() -> None:
    d = Dated([(DEC, "b"), (NOV, "a")])
    assert d.at(at(NOV) - 1) is None
    assert d.at(at(NOV)) == "a"
    assert d.at(at(DEC) - 1) == "a"
    assert d.at(at(DEC)) == d.at(at(JAN)) == "b"
    assert d.cuts(at(NOV), at(JAN)) == [at(DEC)]
    assert d.cuts(at(DEC), at(JAN)) == []  # a change at the start is no cut


@pytest.mark.parametrize(
    ("versions", "code"),
    [
        ([(date(2026, 11, 15), "a")], "bad-effective-month"),
        ([(NOV, "a"), (NOV, "b")], "duplicate-version"),
    ],
)
def test_versions_start_on_distinct_months_first_days(
    versions: list[tuple[date, str]], code: str
) -> None:
    with pytest.raises(AccountingError) as err:
        Dated(versions)
    assert err.value.code == code


def test_before_the_first_version_the_defaults_and_no_tier_are_in_force() -> None:
    book = _book(discounts=[(DEC, _table("0.1"))], tiers=[(DEC, "partner")])
    nov, dec = at(NOV), at(DEC)
    assert book.discount_table(nov).rate_for(TenantTerms(UNI)) == Decimal("0.60")  # default
    assert book.discount_table(dec).rate_for(TenantTerms(UNI)) == Decimal("0.1")
    assert book.tenant_terms(nov)["uni"] == TenantTerms(UNI, None)
    assert book.tenant_terms(dec)["uni"] == TenantTerms(UNI, "partner")


def test_the_first_tax_rates_also_cover_the_months_before_them() -> None:
    book = _book(taxes=[(DEC, {"MAD": Decimal("0.2")}), (JAN, {"MAD": Decimal("0.1")})])
    assert book.taxes(at(NOV)) == {"MAD": Decimal("0.2")}
    assert book.taxes(at(JAN)) == {"MAD": Decimal("0.1")}
    assert _book().taxes(at(NOV)) == {}


def test_cuts_come_from_discounts_and_tiers_not_from_tax() -> None:
    book = _book(
        discounts=[(NOV, _table("0.1"))],
        taxes=[(DEC, {"MAD": Decimal("0.2")})],
        tiers=[(JAN, "partner")],
    )
    assert book.cuts(at(NOV), at(date(2027, 2, 1))) == [at(JAN)]


def test_a_record_across_a_change_is_rated_part_by_part() -> None:
    book = _book(discounts=[(NOV, _table("0.5")), (DEC, _table("0.25"))])
    base = context()
    lo, hi = at(NOV), at(JAN)
    parts = book.parts(lo, hi, base.prices, base.fx, base.fx_day)
    assert [p for p, _ in parts] == [(lo, at(DEC)), (at(DEC), hi)]
    across = rec(start=at(DEC) - 3 * HOUR, end=at(DEC) + HOUR, gpus=1)  # 3 h, then 1 h
    lines = rate_in_parts([across], parts, {})
    assert [(li.charged_gpu_seconds, li.discount_rate) for li in lines] == [
        (3 * HOUR, Decimal("0.5")),
        (HOUR, Decimal("0.25")),
    ]
    assert [str(li.net.amount) for li in lines] == ["45.00", "22.50"]  # 30 MAD an hour
    # Without a change the parts are one period, and the lines those of ``rate``.
    assert rate_in_parts([across], [((lo, hi), base)], {}) == rate([across], (lo, hi), base, {})
