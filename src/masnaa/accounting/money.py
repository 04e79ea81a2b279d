"""Money: an exact ``Decimal`` amount in one ISO 4217 currency.

Invariants:
- arithmetic is only defined within one currency; mixing raises
  ``CurrencyMismatch`` (never an implicit conversion: conversion is
  ``prices.ExchangeRates``' job, with a dated rate);
- amounts are kept unrounded while computing; ``rounded()`` rounds to the
  currency's minor units as Babel (CLDR) knows them (2 for MAD, ZAR, NGN, KES,
  EGP and USD; 0 for JPY), and rounding happens once per line item and once per
  tax line, never per usage record.

Rounding mode: ``ROUND_HALF_UP`` (commercial rounding). Statements are read and
re-computed by tenants' accountants and tax offices, who round half up; since
we round only line items and tax (thousands per statement, not millions of
records), the upward bias of half-up on exact ties is at most half a minor unit
per line and in practice negligible. ``ROUND_HALF_EVEN`` would remove that bias
but surprises readers who check a statement by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import lru_cache

from babel.numbers import format_currency, get_currency_precision, is_currency

from masnaa.accounting.errors import AccountingError, CurrencyMismatch

ROUNDING = ROUND_HALF_UP
"""The rounding mode of every customer-facing amount (see module docstring)."""

PRECISION = 50
"""Significant digits for intermediate Decimal math: a month of a 12,000-GPU
factory is ~3e10 GPU-seconds times prices up to ~1e4 per hour, far inside 50
digits, so no intermediate result is ever rounded by the context."""

SUPPORTED_LOCALES = ("en", "fr", "ar")


@lru_cache(maxsize=256)
def minor_units(currency: str) -> int:
    """Digits after the decimal point for ``currency`` (Babel/CLDR data)."""
    return int(get_currency_precision(currency))


@lru_cache(maxsize=256)
def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def check_currency(currency: str) -> str:
    """Return ``currency`` if it is a known ISO 4217 code, else raise."""
    if not isinstance(currency, str) or not is_currency(currency):
        raise AccountingError(
            "unknown-currency",
            f"{currency!r} is not an ISO 4217 currency code; use e.g. MAD, ZAR, NGN, KES, EGP, USD",
        )
    return currency


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Exact conversion; floats are refused because they carry binary error."""
    if isinstance(value, (bool, float)):
        raise AccountingError(
            "inexact-amount",
            f"amounts must be Decimal, int or str, not {type(value).__name__} ({value!r}); "
            "write Decimal('3.85') instead of 3.85",
        )
    d = Decimal(value)
    if not d.is_finite():
        raise AccountingError("inexact-amount", f"amount must be finite, got {value!r}")
    return d


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", to_decimal(self.amount))
        check_currency(self.currency)

    @staticmethod
    def of(amount: Decimal | int | str, currency: str) -> Money:
        return Money(to_decimal(amount), currency)

    @staticmethod
    def zero(currency: str) -> Money:
        return Money(Decimal(0), currency)

    def _same(self, other: Money, op: str) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot {op} Money and {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"cannot {op} {self.currency} and {other.currency}; convert one with a dated "
                "exchange rate first"
            )

    def __add__(self, other: Money) -> Money:
        self._same(other, "add")
        with localcontext(prec=PRECISION):
            return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other, "subtract")
        with localcontext(prec=PRECISION):
            return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        with localcontext(prec=PRECISION):
            return Money(self.amount * to_decimal(factor), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount >= other.amount

    def rounded(self) -> Money:
        """Round to the currency's minor units with ``ROUNDING``."""
        with localcontext(prec=PRECISION):
            return Money(self.amount.quantize(_quantum(self.currency), ROUNDING), self.currency)

    def format(self, locale: str = "en") -> str:
        """The amount rounded and written the way ``locale`` writes money
        (``MAD1,234.50`` in en, ``1 234,50 MAD`` in fr, Arabic digits grouping
        and the currency sign in ar)."""
        return str(format_currency(self.rounded().amount, self.currency, locale=locale))

    def __str__(self) -> str:
        return f"{self.rounded().amount} {self.currency}"


def total(items: list[Money] | tuple[Money, ...], currency: str) -> Money:
    """Sum of ``items``, all in ``currency`` (an empty sum is zero)."""
    acc = Money.zero(currency)
    for m in items:
        acc = acc + m
    return acc
