"""Builders for residency tests: five sites, the shipped rules, grounds in one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from masnaa.policy import Dataset, GroundKind, SiteState, SiteView, TransferGround, dataset
from masnaa.policy.loader import default_rules_path, load_rules, parse_rules
from masnaa.policy.rules import RuleSet

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = load_rules()
SITES = (
    SiteView("ma-1", "MA"),
    SiteView("za-1", "ZA"),
    SiteView("ng-1", "NG"),
    SiteView("ke-1", "KE"),
    SiteView("eg-1", "EG"),
)
HOME = {"MA": "ma-1", "ZA": "za-1", "NG": "ng-1", "KE": "ke-1", "EG": "eg-1"}


def ground(country: str, condition: str, *, kind: str | None = None, ref: str | None = None,
           days: float | None = None, to: tuple[str, ...] | None = None,
           rules: RuleSet = RULES) -> TransferGround:
    """A ground under ``country``; expires ``days`` after NOW (negative: already expired)."""
    real_kind = rules.condition_kinds[condition] if kind is None else kind
    expires = None if days is None else NOW + timedelta(days=days)
    if real_kind == "authorisation":
        ref = ref or f"{country}-AUTH-1"
        expires = expires or NOW + timedelta(days=365)
    return TransferGround(country, condition, GroundKind(real_kind), ref, expires,
                          None if to is None else frozenset(to))


def ds(id: str, country: str, data_class: str, *grounds: TransferGround,
       serving: tuple[str, ...] = (), version: int = 1) -> Dataset:
    return dataset(id, jurisdiction=country, data_class=data_class, home_site=HOME[country],
                   owner="lab", grounds=grounds, serving_copy_countries=serving,
                   version=version)


def sites_with(**states: str) -> tuple[SiteView, ...]:
    return tuple(SiteView(s.name, s.country, SiteState(states.get(s.name.replace("-", "_"),
                                                                   "up")))
                 for s in SITES)


def rules_with_adequate(country: str, destinations: list[str]) -> RuleSet:
    """The shipped rules with ``countries.<country>.adequate_destinations`` filled in."""
    text = default_rules_path().read_text()
    marker = f"[countries.{country}]"
    head, tail = text.split(marker, 1)
    before, after = tail.split("adequate_destinations = []", 1)
    return parse_rules(head + marker + before
                       + f"adequate_destinations = {destinations!r}".replace("'", '"') + after)
