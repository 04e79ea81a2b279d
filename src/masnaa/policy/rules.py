"""The residency rule table as pure, immutable values: ``RuleSet`` and ``CountryRule``.

Owns: the in-memory form of the operator's rules file (see
``masnaa/data/residency/rules.toml`` and ``docs/residency.md``), the
resolution of data classes (an unknown class counts as ``unknown_class``,
``sensitive`` by default) and the rule set's ``digest``.

Invariants (checked by ``masnaa.policy.loader`` when it builds one, and by
``RuleSet.__post_init__`` for anything built in code):
- every condition a country names is declared in ``conditions`` with a kind;
- every class a country names is in ``known_classes``;
- ``digest`` is the SHA-256 of the canonical JSON of the rule content: two rule
  sets with equal content have equal digests, so caches and audit records key
  on it (``version`` is the operator's label and may be left unchanged).

Terms: a *condition* is a named legal basis for a transfer (``express_consent``);
an *alternative* is a tuple of conditions that must all hold; a country's
transfer is allowed when any alternative holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class TransferDefault(StrEnum):
    ALLOWED = "allowed"
    CONDITIONAL = "conditional"
    FORBIDDEN = "forbidden"


class StrictLocalMode(StrEnum):
    PROCESS_IN_COUNTRY = "process_in_country"
    """Strict-local data is processed only at sites in its country."""
    SERVING_COPY = "process_in_country_or_serving_copy_in_country"
    """Kenya-style: may be processed abroad if a serving copy stays in the country."""


class ConditionKind(StrEnum):
    """What evidence a condition needs. ``adequacy`` is also met by the destination list."""

    CONSENT = "consent"
    AUTHORISATION = "authorisation"
    CONTRACT = "contract"
    SAFEGUARDS = "safeguards"
    NECESSITY = "necessity"
    ADEQUACY = "adequacy"


class InconsistentRules(ValueError):
    """A rule set whose parts do not refer to each other correctly.

    ``problems`` lists ``(key path, sentence)`` pairs, first fault first.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


@dataclass(frozen=True, slots=True)
class CountryRule:
    """The law of one country (ISO 3166 alpha-2 ``code``) for data under it."""

    code: str
    regulator: str
    law: str
    transfer_default: TransferDefault
    conditions: tuple[tuple[str, ...], ...]
    strict_local_classes: frozenset[str] = frozenset()
    strict_local_mode: StrictLocalMode = StrictLocalMode.PROCESS_IN_COUNTRY
    prior_authorisation_classes: frozenset[str] = frozenset()
    authorisation_condition: str | None = None
    prior_authorisation_unless_adequate: bool = False
    sensitive_transfer: tuple[str, ...] | None = None
    adequate_destinations: frozenset[str] = frozenset()

    def rule_id(self, part: str) -> str:
        return f"{self.code}.{part}"

    def as_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "regulator": self.regulator,
            "law": self.law,
            "transfer_default": self.transfer_default.value,
            "conditions": [list(a) for a in self.conditions],
            "strict_local_classes": sorted(self.strict_local_classes),
            "strict_local_mode": self.strict_local_mode.value,
            "prior_authorisation_classes": sorted(self.prior_authorisation_classes),
            "authorisation_condition": self.authorisation_condition,
            "prior_authorisation_unless_adequate": self.prior_authorisation_unless_adequate,
            "sensitive_transfer": (
                None if self.sensitive_transfer is None else list(self.sensitive_transfer)
            ),
            "adequate_destinations": sorted(self.adequate_destinations),
        }


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A whole rule table. Build with ``masnaa.policy.loader`` or directly in tests."""

    version: str
    countries: Mapping[str, CountryRule]
    condition_kinds: Mapping[str, ConditionKind]
    known_classes: tuple[str, ...]
    """Every known class, least strict first."""
    unrestricted_classes: frozenset[str] = frozenset({"public"})
    sensitive_classes: frozenset[str] = frozenset()
    unknown_class: str = "sensitive"
    cross_site_is_transfer: bool = True
    remote_admin_access_is_transfer: bool = True
    download_roles: frozenset[str] = frozenset({"owner", "tenant-admin", "member", "operator"})
    source: str = ""
    regional: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    digest: str = field(init=False, compare=False)
    _rank: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = check_consistency(self)
        if problems:
            raise InconsistentRules(problems)
        object.__setattr__(self, "_rank", {c: i for i, c in enumerate(self.known_classes)})
        body = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "digest", hashlib.sha256(body.encode()).hexdigest())

    def resolve_class(self, name: str) -> str:
        """The class the rules apply: ``name`` if known, else ``unknown_class``."""
        return name if name in self._rank else self.unknown_class

    def strictest(self, classes: frozenset[str]) -> str:
        """The most strict of ``classes`` (after resolution), for display."""
        resolved = {self.resolve_class(c) for c in classes} or {self.unknown_class}
        return max(resolved, key=lambda c: self._rank[c])

    def as_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "countries": {k: self.countries[k].as_json() for k in sorted(self.countries)},
            "condition_kinds": {k: v.value for k, v in sorted(self.condition_kinds.items())},
            "known_classes": list(self.known_classes),
            "unrestricted_classes": sorted(self.unrestricted_classes),
            "sensitive_classes": sorted(self.sensitive_classes),
            "unknown_class": self.unknown_class,
            "cross_site_is_transfer": self.cross_site_is_transfer,
            "remote_admin_access_is_transfer": self.remote_admin_access_is_transfer,
            "download_roles": sorted(self.download_roles),
        }


def check_consistency(rules: RuleSet) -> list[tuple[str, str]]:
    """Cross-references a rule set must satisfy: ``(key path, sentence)`` per fault."""
    problems: list[tuple[str, str]] = []
    known = set(rules.known_classes)
    if len(known) != len(rules.known_classes):
        problems.append(("classes.known", "a class is listed twice; list each class once"))
    if rules.unknown_class not in known:
        problems.append((
            "defaults.unknown_class",
            f"{rules.unknown_class!r} is not in classes.known; name a known class",
        ))
    for label, classes in (
        ("classes.unrestricted", rules.unrestricted_classes),
        ("classes.sensitive", rules.sensitive_classes),
    ):
        for c in sorted(classes - known):
            problems.append((label, f"class {c!r} is not in classes.known"))
    for code, country in rules.countries.items():
        base = f"countries.{code}"
        named: list[tuple[str, str]] = [
            (f"{base}.conditions", c) for alt in country.conditions for c in alt
        ]
        if country.sensitive_transfer is not None:
            named += [(f"{base}.sensitive_transfer", c) for c in country.sensitive_transfer]
        if country.authorisation_condition is not None:
            named.append((f"{base}.authorisation_condition", country.authorisation_condition))
        for path, cond in named:
            if cond not in rules.condition_kinds:
                problems.append((path, f"condition {cond!r} is not declared in [conditions]"))
        auth = country.authorisation_condition
        if auth is not None and rules.condition_kinds.get(auth) not in (
            None,
            ConditionKind.AUTHORISATION,
        ):
            problems.append((
                f"{base}.authorisation_condition",
                f"{auth!r} must be declared with kind 'authorisation'",
            ))
        if country.prior_authorisation_classes and auth is None:
            problems.append((
                f"{base}.authorisation_condition",
                "required because prior_authorisation_classes is not empty",
            ))
        for label, classes in (
            ("strict_local_classes", country.strict_local_classes),
            ("prior_authorisation_classes", country.prior_authorisation_classes),
        ):
            for c in sorted(classes - known):
                problems.append((f"{base}.{label}", f"class {c!r} is not in classes.known"))
        if country.transfer_default is TransferDefault.CONDITIONAL and not country.conditions:
            problems.append((f"{base}.conditions", "a conditional country needs at least one"))
    return problems
