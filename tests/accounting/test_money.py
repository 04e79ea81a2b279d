from decimal import Decimal

import pytest

from masnaa.accounting.errors import AccountingError, CurrencyMismatch
from masnaa.accounting.money import Money, minor_units, total


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1.005", "MAD", "1.01"),  # half up on a tie
        ("1.015", "ZAR", "1.02"),
        ("2.675", "NGN", "2.68"),
        ("1.0049", "KES", "1.00"),
        ("-1.005", "EGP", "-1.01"),  # half away from zero for negatives (credits)
        ("0.125", "USD", "0.13"),
        ("1234.5", "JPY", "1235"),  # zero minor units
    ],
)
def test_rounding_to_minor_units_half_up(amount: str, currency: str, expected: str) -> None:
    assert Money.of(amount, currency).rounded().amount == Decimal(expected)


def test_minor_units_come_from_babel() -> None:
    assert [minor_units(c) for c in ("MAD", "ZAR", "NGN", "KES", "EGP", "USD")] == [2] * 6
    assert minor_units("JPY") == 0


def test_arithmetic_within_one_currency_is_exact() -> None:
    a = Money.of("0.1", "MAD") + Money.of("0.2", "MAD")
    assert a == Money.of("0.3", "MAD")
    assert (a * 3).amount == Decimal("0.9")
    assert (a - Money.of("1", "MAD")).amount == Decimal("-0.7")
    assert -a == Money.of("-0.3", "MAD")
    assert total([a, a], "MAD").amount == Decimal("0.6")
    assert Money.of(1, "MAD") < Money.of(2, "MAD")


@pytest.mark.parametrize(
    "op",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a >= b,
        lambda a, b: total([a, b], "MAD"),
    ],
)
def test_currency_mismatch_is_rejected(op) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CurrencyMismatch) as err:
        op(Money.of(1, "MAD"), Money.of(1, "ZAR"))
    assert err.value.code == "currency-mismatch"
    assert "MAD" in str(err.value) and "ZAR" in str(err.value)


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [
        (1.5, "MAD", "inexact-amount"),
        ("NaN", "MAD", "inexact-amount"),
        (1, "XYZ", "unknown-currency"),
        (1, "mad", "unknown-currency"),
    ],
)
def test_bad_money_is_rejected(amount: object, currency: str, code: str) -> None:
    with pytest.raises(AccountingError) as err:
        Money.of(amount, currency)  # type: ignore[arg-type]
    assert err.value.code == code


@pytest.mark.parametrize("currency", ["MAD", "ZAR", "NGN", "KES", "EGP", "USD"])
def test_format_per_locale(currency: str) -> None:
    m = Money.of("1234567.505", currency)
    en, fr, ar = m.format("en"), m.format("fr"), m.format("ar")
    assert "1,234,567.51" in en
    # French groups with a (narrow) no-break space and uses a decimal comma.
    assert "567,51" in fr and fr.replace("\u202f", " ").replace("\xa0", " ").startswith("1 234")
    assert "1,234,567.51" in ar and ar != en
    assert str(m) == f"1234567.51 {currency}"


def test_format_uses_currency_signs_where_cldr_has_them() -> None:
    assert Money.of(5, "USD").format("en") == "$5.00"
    assert "د.م." in Money.of(5, "MAD").format("ar")
