"""Languages of the portal: choosing one per request, its catalog, and locale formatting.

Owns the list of languages (``LANGUAGES``), negotiation (``?lang=`` beats the
``masnaa_lang`` cookie, which beats ``Accept-Language``; English otherwise),
the gettext catalogs and the formatting of numbers, dates, durations and money.

Invariants:
- Catalogs are read from the ``.po`` sources in ``locales/`` and compiled in
  memory once per process (``babel.messages``): what is served is always what
  the source says, with no build step that could leave a stale ``.mo``.
  A message with no translation falls back to the English source string.
- Times are UNIX seconds and are shown in UTC, labelled as such: the factory
  spans several time zones and a job's times must read the same to everyone.
- Money is formatted by Babel with the currency's own minor units (MAD, ZAR,
  NGN, KES, EGP: two) and the locale's symbol placement.
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, negotiate_locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent

from masnaa.domain import reasons

LOCALES_DIR = Path(__file__).parent / "locales"
LANGUAGES: dict[str, str] = {"en": "English", "fr": "Français", "ar": "العربية"}
"""Code → the language's own name (shown in the language switcher)."""
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "masnaa_lang"


def choose_language(query: str | None, cookie: str | None, accept: str | None) -> str:
    """The language of one request: ``?lang=``, then the cookie, then the header."""
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    if accept:
        wanted = []
        for part in accept.split(","):
            tag = part.split(";")[0].strip().replace("-", "_")
            if tag:
                wanted.append(tag)
        # Babel matches "fr_CA" to "fr" and "ar_MA" to "ar".
        found = negotiate_locale(wanted, list(LANGUAGES), sep="_")
        if found is None:
            found = negotiate_locale([w.split("_")[0] for w in wanted], list(LANGUAGES))
        if found in LANGUAGES:
            return found
    return DEFAULT_LANGUAGE


@lru_cache(maxsize=len(LANGUAGES))
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of ``lang`` (English: the source strings)."""
    po_path = LOCALES_DIR / lang / "LC_MESSAGES" / "messages.po"
    if not po_path.exists():
        return gettext.NullTranslations()
    with po_path.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


@dataclass(frozen=True, slots=True)
class Lang:
    """Everything a page needs to speak one language."""

    code: str

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.code)

    @property
    def dir(self) -> str:
        return "rtl" if self.locale.character_order == "right-to-left" else "ltr"

    def gettext(self, message: str, **values: Any) -> str:
        text = translations(self.code).gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        text = translations(self.code).ngettext(singular, plural, n)
        return text % {"num": n, **values}

    def reason(self, phrases: object, english: str) -> str:
        """A stored reason (``masnaa.domain.reasons``) in this language; its stored
        English text where it has no phrases (written before they existed) or one
        that this version cannot render."""
        # Names, node lists and numbers run left to right: in a right-to-left sentence
        # each is isolated (FSI … PDI), or its brackets and commas take the wrong side.
        isolate = self.dir == "rtl"

        def show(name: str, value: str | int | float) -> str:
            if name.endswith("_at") and isinstance(value, int | float):
                shown = self.datetime(float(value))
            elif isinstance(value, float):
                shown = f"{value:g}"
            else:
                shown = str(value)
            return f"\u2068{shown}\u2069" if isolate else shown

        said = reasons.text(reasons.from_json(phrases), translations(self.code).gettext, show)
        return said or english

    # --- formatting -------------------------------------------------------------

    def number(self, value: float | int | Decimal, digits: int = 0) -> str:
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, format=pattern, locale=self.code)

    def percent(self, fraction: float) -> str:
        return format_percent(fraction, locale=self.code)

    def money(self, amount: Decimal | float, currency: str) -> str:
        return format_currency(amount, currency, locale=self.code)

    def datetime(self, seconds: float | None) -> str:
        if seconds is None:
            return "—"
        moment = datetime.fromtimestamp(seconds, tz=UTC)
        return format_datetime(moment, "medium", tzinfo=UTC, locale=self.code) + " UTC"

    def relative(self, seconds: float | None, now: float) -> str:
        """``in 5 minutes`` / ``3 hours ago``, rounded as people say it."""
        if seconds is None:
            return "—"
        return format_timedelta(
            timedelta(seconds=seconds - now), add_direction=True, locale=self.code
        )

    def duration(self, seconds: float) -> str:
        return format_timedelta(timedelta(seconds=seconds), threshold=1.0, locale=self.code)
