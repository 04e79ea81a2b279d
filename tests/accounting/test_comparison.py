"""Comparison prices: each site's rate card in one unit, for choosing among sites."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from masnaa.accounting.comparison import comparison_prices
from masnaa.accounting.instants import at
from masnaa.accounting.money import Money
from masnaa.accounting.prices import ExchangeRate, ExchangeRates, Price, PriceBook

H100 = "h100-sxm-80gb"
SITES = {"ma-1": "MAD", "za-1": "ZAR", "ke-1": "KES"}
DAY = date(2026, 11, 25)


def book(*prices: tuple[str, str, str, date, date | None]) -> PriceBook:
    return PriceBook(
        [Price(site, H100, Money.of(amount, cur), start, end)
         for site, amount, cur, start, end in prices],
        SITES,
    )


def rates(*pairs: tuple[str, str]) -> ExchangeRates:
    return ExchangeRates(ExchangeRate(date(2026, 11, 1), c, Decimal(r)) for c, r in pairs)


def test_several_currencies_are_compared_in_dollars_at_the_day_rate() -> None:
    b = book(("ma-1", "30", "MAD", date(2026, 1, 1), None),
             ("za-1", "45", "ZAR", date(2026, 1, 1), None))
    got = comparison_prices(b, rates(("MAD", "10"), ("ZAR", "18")), at(DAY))
    assert got.unit == "USD"
    assert got.prices == {("ma-1", H100): 3.0, ("za-1", H100): 2.5}
    # The larger number is the cheaper price: only the conversion says so.
    assert min(got.prices, key=got.prices.__getitem__) == ("za-1", H100)


def test_one_currency_needs_no_rate() -> None:
    b = PriceBook([Price("a", H100, Money.of("30", "MAD"), date(2026, 1, 1)),
                   Price("b", H100, Money.of("25", "MAD"), date(2026, 1, 1))],
                  {"a": "MAD", "b": "MAD"})
    got = comparison_prices(b, None, at(DAY))
    assert got.unit == "MAD" and got.prices == {("a", H100): 30.0, ("b", H100): 25.0}


def test_a_price_without_a_rate_is_left_out_and_named() -> None:
    b = book(("ma-1", "30", "MAD", date(2026, 1, 1), None),
             ("ke-1", "390", "KES", date(2026, 1, 1), None))
    got = comparison_prices(b, rates(("MAD", "10")), at(DAY))
    assert got.prices == {("ma-1", H100): 3.0}
    assert got.left_out == (("ke-1", H100),)
    none = comparison_prices(b, None, at(DAY))
    assert none.prices == {} and set(none.left_out) == {("ma-1", H100), ("ke-1", H100)}


@pytest.mark.parametrize(("day", "expect"), [
    (date(2026, 11, 30), 30.0),  # the first price
    (date(2026, 12, 1), 20.0),   # the new price from its first day
])
def test_the_price_in_force_at_the_instant_counts(day: date, expect: float) -> None:
    b = book(("ma-1", "30", "MAD", date(2026, 1, 1), date(2026, 12, 1)),
             ("ma-1", "20", "MAD", date(2026, 12, 1), None),
             ("za-1", "45", "ZAR", date(2027, 1, 1), None))  # not yet in force
    got = comparison_prices(b, rates(("MAD", "10"), ("ZAR", "18")), at(day))
    assert got.prices == {("ma-1", H100): pytest.approx(expect)}
    assert got.unit == "MAD"  # only one currency in force: no conversion
