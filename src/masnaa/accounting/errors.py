"""Errors of the accounting core: one class, a stable machine-readable code.

Every rejection says what was wrong and what would be right, so the API can
hand it to a user unchanged (``code`` becomes the error code of a 4xx answer).
The codes are stable: clients and tests match on them, never on the sentence.
"""

from __future__ import annotations


class AccountingError(ValueError):
    """A rejected input or an impossible request in accounting.

    ``code`` is a short kebab-case identifier (``currency-mismatch``,
    ``overlapping-price``, ``negative-hours``, ``not-a-reviewer`` ...).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class CurrencyMismatch(AccountingError):
    """Two amounts in different currencies were combined, or a price's
    currency differs from its site's."""

    def __init__(self, message: str) -> None:
        super().__init__("currency-mismatch", message)
