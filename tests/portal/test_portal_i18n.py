"""Catalogs are complete and well-formed; numbers, dates and money follow the locale."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir, extract_python
from babel.messages.pofile import read_po

from masnaa.portal.i18n import LANGUAGES, Lang, choose_language

PORTAL = Path(__file__).resolve().parents[2] / "src" / "masnaa" / "portal"
REASONS = PORTAL.parent / "domain" / "reasons.py"
"""The phrases of job reasons, which the portal renders through the same catalogs."""
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extracted() -> set[str]:
    """Every message the code and templates use (the same map as babel.cfg)."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    out = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(PORTAL), method_map, keywords=KEYWORDS,
        options_map={"templates/**.html": {"trimmed": "true"}},
    ):
        out.add(message[0] if isinstance(message, tuple) else message)
    with REASONS.open("rb") as f:
        out.update(message for _line, _function, message, _comments in extract_python(
            f, KEYWORDS, [], {}))
    return out


def catalog(lang: str):  # type: ignore[no-untyped-def]
    with (PORTAL / "locales" / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_every_message_is_translated(lang: str) -> None:
    cat = catalog(lang)
    missing = []
    for message in sorted(extracted()):
        entry = cat.get(message)
        strings = [] if entry is None else (
            list(entry.string) if isinstance(entry.string, tuple) else [entry.string]
        )
        if not strings or not all(strings):
            missing.append(message)
    assert not missing, f"{lang}: run the update workflow in docs/portal.md for {missing}"


@pytest.mark.parametrize("lang", ["en", "fr", "ar"])
def test_catalogs_keep_every_placeholder(lang: str) -> None:
    problems = [
        (entry.id, [str(e) for e in errors]) for entry, errors in catalog(lang).check() if errors
    ]
    assert not problems


@pytest.mark.parametrize(
    ("query", "cookie", "header", "expected"),
    [
        ("ar", None, "fr", "ar"),
        (None, "fr", "ar", "fr"),
        ("xx", "fr", None, "fr"),
        (None, None, "ar-MA,fr;q=0.5", "ar"),
        (None, None, "fr-CA", "fr"),
        (None, None, "de-DE,en-GB;q=0.8", "en"),
        (None, None, "sw-KE", "en"),
        (None, None, None, "en"),
    ],
)
def test_language_choice(query: str | None, cookie: str | None, header: str | None,
                         expected: str) -> None:
    assert choose_language(query, cookie, header) == expected


def test_arabic_is_right_to_left_and_the_others_are_not() -> None:
    assert {code: Lang(code).dir for code in LANGUAGES} == {"en": "ltr", "fr": "ltr", "ar": "rtl"}


@pytest.mark.parametrize("currency", ["MAD", "ZAR", "NGN", "KES", "EGP"])
def test_money_in_each_locale(currency: str) -> None:
    amount = Decimal("1234567.891")
    en, fr, ar = (Lang(code).money(amount, currency) for code in ("en", "fr", "ar"))
    assert "1,234,567.89" in en
    # French groups with a (narrow) no-break space and uses a decimal comma.
    assert "567,89" in fr and "1.234" not in fr
    assert "1,234,567.89" in ar or "١٬٢٣٤٬٥٦٧٫٨٩" in ar
    for text in (en, fr, ar):
        assert text != str(amount)


def test_numbers_and_dates_follow_the_locale() -> None:
    assert Lang("en").number(12345.5, 1) == "12,345.5"
    assert Lang("fr").number(12345.5, 1).replace("\u202f", " ") == "12 345,5"
    moment = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
    assert Lang("en").datetime(moment) == "Sep 21, 2026, 2:13:20\u202fPM UTC"
    assert Lang("fr").datetime(moment) == "21 sept. 2026, 14:13:20 UTC"
    assert Lang("fr").relative(moment + 300, moment) == "dans 5 minutes"


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, "مهمّة واحدة"), (2, "مهمّتان"), (5, "5 مهامّ"), (11, "11 مهمّة"), (100, "100 مهمّة")],
)
def test_arabic_plurals(n: int, expected: str) -> None:
    assert Lang("ar").ngettext("%(num)s job", "%(num)s jobs", n) == expected


def test_french_plurals() -> None:
    fr = Lang("fr")
    assert fr.ngettext("%(num)s job", "%(num)s jobs", 1) == "1 job"
    assert fr.ngettext("%(num)s job", "%(num)s jobs", 3) == "3 jobs"


def test_a_job_its_site_holds_shows_the_sites_reason() -> None:
    from types import SimpleNamespace

    from masnaa.portal import labels
    from masnaa.portal.web import make_environment

    say = Lang("fr")
    macro = make_environment().get_template("_jobs.html").make_module(
        {"_": say.gettext, "lang": say, "labels": labels}
    ).reason
    phrase = [{"key": "slurm-pending", "params": {"detail": "Resources"}}]
    held = SimpleNamespace(state="running", started_at=None, wait_code=None,
                           wait_message="held pending by Slurm: Resources",
                           wait_phrases=phrase, state_phrases=[], state_reason="run 1 started")
    said = say.reason(phrase, held.wait_message)
    assert said == "retenue en attente par Slurm : Resources"  # in the reader's language
    assert str(macro(held)).strip() == said
    started = SimpleNamespace(**{**vars(held), "started_at": 1.0})
    assert "Resources" not in str(macro(started))
