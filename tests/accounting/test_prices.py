from datetime import date
from decimal import Decimal

import pytest
from acct_builders import H100, L40S, SITES, price_book

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, at
from masnaa.accounting.money import Money
from masnaa.accounting.prices import (
    DEFAULT_DISCOUNTS,
    REFERENCE_USD_PER_GPU_HOUR,
    Discount,
    DiscountTable,
    ExchangeRate,
    ExchangeRates,
    Price,
    PriceBook,
    TenantTerms,
    price_list_from_usd,
)
from masnaa.domain.tenancy import TenantKind


def test_price_lookup_respects_half_open_ranges() -> None:
    book = price_book(change_on=date(2026, 11, 16))
    change = at(date(2026, 11, 16))
    assert book.price_at("ma-1", H100, change - 1).per_gpu_hour == Money.of("30.00", "MAD")
    assert book.price_at("ma-1", H100, change).per_gpu_hour == Money.of("33.00", "MAD")
    assert book.price_at("za-1", L40S, change).per_gpu_hour == Money.of("10.00", "ZAR")


def test_spans_split_at_price_boundaries() -> None:
    book = price_book(change_on=date(2026, 11, 16))
    change = at(date(2026, 11, 16))
    spans = book.spans("ke-1", H100, change - 100, change + 50)
    assert [(s.start, s.end, s.price.per_gpu_hour.amount) for s in spans] == [
        (change - 100, change, Decimal("30.00")),
        (change, change + 50, Decimal("33.00")),
    ]


def _book(*prices: Price) -> PriceBook:
    return PriceBook(prices, SITES)


@pytest.mark.parametrize(
    ("prices", "code"),
    [
        (  # overlapping: same site, type, currency
            [
                Price("ma-1", H100, Money.of(30, "MAD"), date(2026, 1, 1), date(2026, 7, 1)),
                Price("ma-1", H100, Money.of(31, "MAD"), date(2026, 6, 1)),
            ],
            "overlapping-price",
        ),
        (  # two open-ended lists
            [
                Price("ma-1", H100, Money.of(30, "MAD"), date(2026, 1, 1)),
                Price("ma-1", H100, Money.of(31, "MAD"), date(2026, 6, 1)),
            ],
            "overlapping-price",
        ),
        ([Price("ma-1", H100, Money.of(-1, "MAD"), date(2026, 1, 1))], "negative-price"),
        ([Price("ma-1", H100, Money.of(30, "ZAR"), date(2026, 1, 1))], "currency-mismatch"),
        (
            [Price("ma-1", H100, Money.of(30, "MAD"), date(2026, 2, 1), date(2026, 2, 1))],
            "empty-period",
        ),
        ([Price("xx-9", H100, Money.of(30, "MAD"), date(2026, 1, 1))], "unknown-site"),
    ],
)
def test_bad_price_lists_are_rejected(prices: list[Price], code: str) -> None:
    with pytest.raises(AccountingError) as err:
        _book(*prices)
    assert err.value.code == code


def test_adjacent_ranges_and_other_types_do_not_overlap() -> None:
    book = _book(
        Price("ma-1", H100, Money.of(30, "MAD"), date(2026, 1, 1), date(2026, 6, 1)),
        Price("ma-1", H100, Money.of(31, "MAD"), date(2026, 6, 1)),
        Price("ma-1", L40S, Money.of(9, "MAD"), date(2026, 1, 1)),
        Price("za-1", H100, Money.of(50, "ZAR"), date(2026, 1, 1)),
    )
    assert len(book.keys()) == 3


def test_no_price_in_a_gap_is_an_error() -> None:
    book = _book(Price("ma-1", H100, Money.of(30, "MAD"), date(2026, 1, 1), date(2026, 2, 1)))
    with pytest.raises(AccountingError) as err:
        book.spans("ma-1", H100, at(date(2026, 1, 31)), at(date(2026, 2, 1)) + 10)
    assert err.value.code == "no-price"
    with pytest.raises(AccountingError):
        book.price_at("ma-1", H100, at(date(2025, 12, 31)))


@pytest.mark.parametrize(
    ("terms", "rate"),
    [
        (TenantTerms(TenantKind.UNIVERSITY), "0.60"),
        (TenantTerms(TenantKind.NGO), "0.50"),
        (TenantTerms(TenantKind.STARTUP, "seed"), "0.40"),
        (TenantTerms(TenantKind.STARTUP, "growth"), "0.25"),
        (TenantTerms(TenantKind.STARTUP, "unknown-tier"), "0.10"),  # falls back to the kind
        (TenantTerms(TenantKind.ENTERPRISE), "0"),
    ],
)
def test_discounts_pick_the_most_specific_row(terms: TenantTerms, rate: str) -> None:
    assert DiscountTable(DEFAULT_DISCOUNTS).rate_for(terms) == Decimal(rate)


@pytest.mark.parametrize(
    ("rows", "code"),
    [
        ([Discount(TenantKind.NGO, Decimal("1.2"))], "bad-discount"),
        ([Discount(TenantKind.NGO, Decimal("-0.1"))], "bad-discount"),
        ([Discount(TenantKind.NGO, Decimal("0.1")), Discount(TenantKind.NGO, Decimal("0.2"))],
         "duplicate-discount"),
    ],
)  # fmt: skip
def test_bad_discounts_are_rejected(rows: list[Discount], code: str) -> None:
    with pytest.raises(AccountingError) as err:
        DiscountTable(rows)
    assert err.value.code == code


def test_exchange_uses_latest_rate_on_or_before_the_day() -> None:
    fx = ExchangeRates(
        [
            ExchangeRate(date(2026, 11, 1), "NGN", Decimal("1500")),
            ExchangeRate(date(2026, 11, 10), "NGN", Decimal("1600")),
        ]
    )
    assert fx.per_usd("NGN", date(2026, 11, 9)) == Decimal("1500")
    assert fx.per_usd("NGN", date(2026, 11, 10)) == Decimal("1600")
    assert fx.per_usd("NGN", date(2027, 1, 1)) == Decimal("1600")
    assert fx.to_usd(Money.of("3200", "NGN"), date(2026, 11, 12)) == Money.of(2, "USD")
    assert fx.to_usd(Money.of("7", "USD"), date(2000, 1, 1)) == Money.of(7, "USD")


@pytest.mark.parametrize(
    ("currency", "day"),
    [("NGN", date(2026, 10, 31)), ("EGP", date(2026, 11, 30))],
)
def test_missing_exchange_rate_is_a_clear_error(currency: str, day: date) -> None:
    fx = ExchangeRates([ExchangeRate(date(2026, 11, 1), "NGN", Decimal("1500"))])
    with pytest.raises(AccountingError) as err:
        fx.per_usd(currency, day)
    assert err.value.code == "no-exchange-rate"
    assert currency in err.value.message and str(day) in err.value.message


@pytest.mark.parametrize(("rate", "code"), [(Decimal(0), "bad-rate"), (Decimal(-3), "bad-rate")])
def test_bad_rates_are_rejected(rate: Decimal, code: str) -> None:
    with pytest.raises(AccountingError) as err:
        ExchangeRates([ExchangeRate(date(2026, 1, 1), "MAD", rate)])
    assert err.value.code == code


def test_price_list_from_usd_converts_and_rounds() -> None:
    fx = ExchangeRates([ExchangeRate(date(2026, 1, 1), "MAD", Decimal("9.123"))])
    prices = price_list_from_usd(
        {H100: REFERENCE_USD_PER_GPU_HOUR[H100]}, {"ma-1": "MAD"}, fx, date(2026, 1, 2)
    )
    assert prices[0].per_gpu_hour == Money.of("27.37", "MAD")  # 3.00 × 9.123 = 27.369
    book = PriceBook(prices, {"ma-1": "MAD"})
    assert book.price_at("ma-1", H100, at(date(2030, 1, 1)) + DAY).valid_from == date(2026, 1, 2)
