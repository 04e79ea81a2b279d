"""Where data may be processed or downloaded, and why: the residency decision.

Owns: ``eligible_sites`` (per site: eligible or not, with the rule, law,
regulator and legal basis of every finding, and a remedy for every refusal),
``check_named_sites`` (refuse a job that names a site its data may not go to),
``may_download`` and ``judge_transfer`` (one datum, one jurisdiction, one
class, one destination).

Pure: no IO, no clock (``now`` is an argument, timezone-aware), no globals.

Invariants:
- a site is *lawful* iff every (dataset, jurisdiction, class) finding for it
  is allowed; it is *eligible* iff lawful and ``up``;
- every refusal is a ``Finding`` with a ``rule_id``; legal refusals also name
  the law, the regulator and a remedy;
- the answer is monotone in time only through ground expiry: it is valid until
  ``Eligibility.valid_until`` (the first expiry after ``now``).

Semantics, in order, for data under country Y going to country X
(docs/residency.md has the long form):
1. X == Y: allowed, in-country.
2. the class is unrestricted (``public``): allowed.
3. Y has no rules: refused (``jurisdiction.unknown``).
4. a strict-local class of Y: refused, unless Y's mode is the serving-copy mode
   and a serving copy stays in Y, in which case the transfer rules still apply.
5. placement with ``cross_site_is_transfer = false``: allowed.
6. Y's ``transfer_default``: allowed / forbidden / conditional; conditional needs
   one alternative of ``conditions`` (``sensitive_transfer`` for sensitive
   classes where Y has one) to hold, and a prior-authorisation class also the
   regulator's authorisation (unless the rules waive it for adequate
   destinations and X is adequate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from masnaa.policy.data import Dataset, SiteState, SiteView, TransferGround, utc_instant
from masnaa.policy.rules import (
    ConditionKind,
    CountryRule,
    RuleSet,
    StrictLocalMode,
    TransferDefault,
)

SITE_STATE_RULE = "site.state"
UNKNOWN_JURISDICTION_RULE = "jurisdiction.unknown"
UNRESTRICTED_RULE = "classes.unrestricted"
NO_DATA_RULE = "data.none"
CROSS_SITE_RULE = "defaults.cross_site_is_transfer"
DOWNLOAD_ROLE_RULE = "download.role"
UNKNOWN_SITE_RULE = "sites.unknown"


@dataclass(frozen=True, slots=True)
class Finding:
    """One judgement: may this datum (under this jurisdiction, of this class) go there?"""

    rule_id: str
    allowed: bool
    reason: str
    dataset: str | None = None
    jurisdiction: str | None = None
    data_class: str | None = None
    law: str | None = None
    regulator: str | None = None
    basis: str | None = None
    """The legal basis used when allowed: ``in-country (MA)``, a ground's words."""
    remedy: str | None = None
    """What would make it lawful, when refused."""

    def sentence(self) -> str:
        head = f"{self.rule_id}"
        if self.law:
            head += f" ({self.law}; regulator {self.regulator})"
        if self.allowed:
            return f"{head}: {self.reason} [basis: {self.basis}]"
        text = f"{head}: {self.reason}"
        if not self.remedy:
            return text
        return f"{text}. {'To make it lawful' if self.law else 'Remedy'}: {self.remedy}"


@dataclass(frozen=True, slots=True)
class SiteEligibility:
    site: str
    country: str
    state: SiteState
    lawful: bool
    findings: tuple[Finding, ...]

    @property
    def eligible(self) -> bool:
        return self.lawful and self.state is SiteState.UP

    @property
    def refusals(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.allowed)


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Per site, whether the job's data may be processed there, and why."""

    rules_version: str
    rules_digest: str
    data: frozenset[tuple[str, int]]
    sites: tuple[SiteEligibility, ...]
    valid_until: datetime | None
    """The first ground expiry after the time it was computed for (None: never stale)."""

    @property
    def eligible_sites(self) -> tuple[str, ...]:
        """Lawful and up now."""
        return tuple(s.site for s in self.sites if s.eligible)

    @property
    def lawful_sites(self) -> tuple[str, ...]:
        """Lawful whatever their state: what the service puts in ``Job.sites``."""
        return tuple(s.site for s in self.sites if s.lawful)

    def site(self, name: str) -> SiteEligibility:
        for s in self.sites:
            if s.site == name:
                return s
        raise KeyError(name)

    def explain(self) -> list[str]:
        """One line per site, then its findings, for ``masnaa explain``."""
        lines: list[str] = []
        for s in self.sites:
            verdict = "eligible" if s.eligible else ("lawful, " + s.state.value if s.lawful
                                                     else "not lawful")
            lines.append(f"{s.site} ({s.country}, {s.state.value}): {verdict}")
            lines.extend(f"  - {f.sentence()}" for f in s.findings)
        return lines


class ResidencyRefused(ValueError):
    """A request its data's law forbids. ``code`` is machine-readable."""

    def __init__(self, code: str, message: str, finding: Finding, site: str | None = None
                 ) -> None:
        self.code = code
        self.finding = finding
        self.site = site
        self.rule_id = finding.rule_id
        self.law = finding.law
        self.regulator = finding.regulator
        self.remedy = finding.remedy
        super().__init__(message)


# -- one judgement --------------------------------------------------------------------------

def judge_transfer(
    data: Dataset,
    jurisdiction: str,
    data_class: str,
    destination: str,
    rules: RuleSet,
    now: datetime,
    *,
    placement: bool = True,
) -> Finding:
    """May ``data`` (its ``data_class`` part under ``jurisdiction``) go to ``destination``?

    ``placement``: True when the data is processed at a site of this factory
    (``cross_site_is_transfer`` applies), False for a download.
    """
    cls = rules.resolve_class(data_class)
    shown = cls if cls == data_class else f"{data_class} (unknown class, counted as {cls})"
    country = rules.countries.get(jurisdiction)
    law = country.law if country else None
    regulator = country.regulator if country else None

    def finding(rule_id: str, allowed: bool, reason: str, *, basis: str | None = None,
                remedy: str | None = None) -> Finding:
        return Finding(rule_id, allowed, reason, data.id, jurisdiction, cls, law, regulator,
                       basis, remedy)

    # The lawful alternative: where a job may run, or where a download may go.
    stay = (f"run at a site in {jurisdiction}" if placement
            else f"download it to {jurisdiction} only")
    if destination == jurisdiction:
        return finding(f"{jurisdiction}.in-country", True,
                       f"{data.id} ({shown}) is processed in {jurisdiction}",
                       basis=f"in-country ({jurisdiction})")
    if cls in rules.unrestricted_classes:
        return finding(UNRESTRICTED_RULE, True, f"{data.id} is {shown} data",
                       basis=f"class {cls!r} is unrestricted")
    if country is None:
        return finding(UNKNOWN_JURISDICTION_RULE, False,
                       f"{data.id} is under {jurisdiction}, for which there are no rules",
                       remedy=f"{stay}, or add countries.{jurisdiction} to the rules")
    prefix = ""
    if cls in country.strict_local_classes:
        if country.strict_local_mode is StrictLocalMode.PROCESS_IN_COUNTRY:
            return finding(country.rule_id("strict-local"), False,
                           f"{data.id} is {shown} data, which must stay in {jurisdiction}",
                           remedy=stay)
        if jurisdiction not in data.serving_copy_countries:
            return finding(country.rule_id("strict-local.serving-copy"), False,
                           f"{data.id} is {shown} data: it may leave {jurisdiction} only while "
                           f"a serving copy stays there, and none is recorded",
                           remedy=f"{stay}, or keep a serving copy in {jurisdiction}, record "
                           f"it on {data.id} and hold a transfer ground")
        prefix = f"serving copy kept in {jurisdiction}; "
    if placement and not rules.cross_site_is_transfer:
        return finding(CROSS_SITE_RULE, True,
                       "processing at another site of this factory is not a transfer here",
                       basis=prefix + "cross_site_is_transfer = false")
    if country.transfer_default is TransferDefault.ALLOWED:
        return finding(country.rule_id("transfer-default"), True,
                       f"{jurisdiction} allows transfers of {shown} data",
                       basis=prefix + "transfers allowed by default")
    if country.transfer_default is TransferDefault.FORBIDDEN:
        return finding(country.rule_id("transfer-forbidden"), False,
                       f"{jurisdiction} forbids transfers of {data.id}", remedy=stay)
    return _conditional(data, country, cls, shown, destination, rules, now, prefix, finding,
                        stay)


def _conditional(data: Dataset, country: CountryRule, cls: str, shown: str, destination: str,
                 rules: RuleSet, now: datetime, prefix: str, finding: _Make, stay: str
                 ) -> Finding:
    y = country.code
    notes: list[str] = []
    if country.sensitive_transfer is not None and cls in rules.sensitive_classes:
        alternatives: tuple[tuple[str, ...], ...] = (country.sensitive_transfer,)
        rule_id = country.rule_id("sensitive-transfer")
    else:
        alternatives = country.conditions
        rule_id = country.rule_id("conditional")
    bases: list[str] | None = None
    for alt in alternatives:
        held = [_holds(data, country, c, destination, rules, now, notes) for c in alt]
        if all(b is not None for b in held):
            bases = [b for b in held if b is not None]
            break
    needs_auth = cls in country.prior_authorisation_classes
    auth_basis: str | None = None
    waived = (needs_auth and country.prior_authorisation_unless_adequate
              and destination in country.adequate_destinations)
    if needs_auth and not waived and country.authorisation_condition is not None:
        auth_basis = _holds(data, country, country.authorisation_condition, destination, rules,
                            now, notes)
    auth_ok = not needs_auth or waived or auth_basis is not None
    why_not = ("; " + "; ".join(dict.fromkeys(notes))) if notes else ""
    if bases is None:
        options = " | ".join(" + ".join(alt) for alt in alternatives)
        adequacy = list(dict.fromkeys(c for alt in alternatives for c in alt
                                      if rules.condition_kinds[c] is ConditionKind.ADEQUACY))
        remedy = f"record a ground for one of: {options} (under {y}, covering {destination})"
        if adequacy:
            remedy += (f" ({', '.join(adequacy)} also holds when {destination} is listed in "
                       f"countries.{y}.adequate_destinations)")
        if needs_auth and not auth_ok:
            remedy += f", and the regulator's {country.authorisation_condition} for class {cls}"
        return finding(rule_id, False,
                       f"moving {data.id} ({shown}) from {y} to {destination} needs a transfer "
                       f"ground, and none holds{why_not}",
                       remedy=f"{remedy}; or {stay}")
    if not auth_ok:
        return finding(country.rule_id("prior-authorisation"), False,
                       f"{shown} data of {y} needs the {country.regulator}'s prior "
                       f"authorisation to go to {destination}{why_not}",
                       remedy=f"record the regulator's {country.authorisation_condition} with its "
                       f"reference and expiry (under {y}, covering {destination}); "
                       f"or {stay}")
    used = list(dict.fromkeys(bases + ([auth_basis] if auth_basis else [])))
    if waived:
        used.append(f"{destination} adequate: no prior authorisation needed")
    return finding(rule_id, True, f"{data.id} ({shown}) may go from {y} to {destination}",
                   basis=prefix + "; ".join(used))


def _holds(data: Dataset, country: CountryRule, condition: str, destination: str,
           rules: RuleSet, now: datetime, notes: list[str]) -> str | None:
    """The basis in words if ``condition`` holds for this transfer, else None (+ why in notes)."""
    kind = rules.condition_kinds[condition]
    if kind is ConditionKind.ADEQUACY and destination in country.adequate_destinations:
        return f"{condition}: {destination} is on {country.code}'s adequate list"
    for g in data.grounds:
        if g.country != country.code or g.condition != condition:
            continue
        if g.kind is not kind:
            notes.append(f"ground {condition!r} is recorded as {g.kind.value}, "
                         f"but the rules need {kind.value}")
        elif not g.valid_at(now):
            notes.append(f"ground {condition!r} expired at {_expiry(g)}")
        elif not g.covers(destination):
            notes.append(f"ground {condition!r} does not cover {destination}")
        else:
            return g.describe()
    return None


def _expiry(g: TransferGround) -> str:
    return utc_instant(g.expires) if g.expires else "?"


class _Make(Protocol):
    """The signature of ``judge_transfer``'s local ``finding`` builder."""

    def __call__(self, rule_id: str, allowed: bool, reason: str, *, basis: str | None = None,
                 remedy: str | None = None) -> Finding: ...


# -- per site --------------------------------------------------------------------------------

DatasetFindings = Callable[[Dataset, str], tuple[Finding, ...]]
"""``(dataset, destination country) -> its findings``: lets a cache reuse them per dataset."""


def dataset_findings(data: Dataset, destination: str, rules: RuleSet, now: datetime
                     ) -> tuple[Finding, ...]:
    """Every (jurisdiction, class) finding of one dataset for one destination country."""
    return tuple(judge_transfer(data, j, c, destination, rules, now)
                 for j in sorted(data.jurisdictions) for c in sorted(data.classes))


def first_expiry(data: Iterable[Dataset], now: datetime) -> datetime | None:
    """The first ground expiry after ``now``: when an answer about ``data`` may change."""
    expiries = [g.expires for d in data for g in d.grounds
                if g.expires is not None and g.expires > now]
    return min(expiries) if expiries else None


def eligible_sites(datasets: Iterable[Dataset], sites: Sequence[SiteView], rules: RuleSet,
                   now: datetime, findings_of: DatasetFindings | None = None) -> Eligibility:
    """For each site: may a job reading ``datasets`` run there now, and why (see module doc).

    ``findings_of`` (optional) supplies ``dataset_findings(d, country, rules, now)``,
    e.g. from a cache; it must return exactly that. The answer does not depend on
    the order of ``datasets`` (findings follow ``(id, version)`` order), since
    caches key on the set.
    """
    data = tuple(sorted({d.key: d for d in datasets}.values(), key=lambda d: d.key))
    if findings_of is None:
        def findings_of(d: Dataset, country: str) -> tuple[Finding, ...]:
            return dataset_findings(d, country, rules, now)
    verdicts: list[SiteEligibility] = []
    by_country: dict[str, tuple[Finding, ...]] = {}
    for site in sites:
        findings = by_country.get(site.country)
        if findings is None:
            findings = tuple(f for d in data for f in findings_of(d, site.country)) or (
                Finding(NO_DATA_RULE, True, "the job reads no registered data",
                        basis="no data read"),)
            by_country[site.country] = findings
        lawful = all(f.allowed for f in findings)
        if site.state is not SiteState.UP:
            findings = (*findings, Finding(
                SITE_STATE_RULE, False, f"site {site.name} is {site.state.value}",
                remedy="wait until it is up again" + ("" if lawful else ", and see above")))
        verdicts.append(SiteEligibility(site.name, site.country, site.state, lawful, findings))
    return Eligibility(
        rules_version=rules.version,
        rules_digest=rules.digest,
        data=frozenset(d.key for d in data),
        sites=tuple(verdicts),
        valid_until=first_expiry(data, now),
    )


def check_named_sites(job_sites: Sequence[str] | None, eligibility: Eligibility
                      ) -> tuple[str, ...]:
    """The sites a job may be placed at (its ``Job.sites``), or ``ResidencyRefused``.

    ``None`` means "anywhere allowed": every lawful site. A named site that is
    not lawful refuses the whole job; a lawful site that is down is kept (the
    job waits or goes to another named site).
    """
    if job_sites is None:
        lawful = eligibility.lawful_sites
        if not lawful:
            first = next((f for s in eligibility.sites for f in s.refusals
                          if f.rule_id != SITE_STATE_RULE), None)
            if first is None:
                first = Finding(UNKNOWN_SITE_RULE, False, "the factory has no sites",
                                remedy="declare at least one site")
            raise ResidencyRefused(
                "no-lawful-site", f"no site may process this job's data: {first.sentence()}",
                first)
        return lawful
    known = {s.site: s for s in eligibility.sites}
    for name in job_sites:
        verdict = known.get(name)
        if verdict is None:
            f = Finding(UNKNOWN_SITE_RULE, False, f"there is no site {name!r}",
                        remedy=f"name one of: {', '.join(sorted(known))}")
            raise ResidencyRefused("unknown-site", f.sentence(), f, name)
        if not verdict.lawful:
            f = next(r for r in verdict.refusals if r.rule_id != SITE_STATE_RULE)
            raise ResidencyRefused(
                "residency-refused", f"this job may not run at {name}: {f.sentence()}", f, name)
    return tuple(dict.fromkeys(job_sites))


# -- downloads -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DownloadDecision:
    allowed: bool
    findings: tuple[Finding, ...]

    def raise_if_refused(self) -> None:
        for f in self.findings:
            if not f.allowed:
                raise ResidencyRefused("download-refused",
                                       f"this download is refused: {f.sentence()}", f)


def may_download(artifact: Dataset, destination_country: str, person_country: str | None,
                 role: str, rules: RuleSet, now: datetime) -> DownloadDecision:
    """May ``artifact`` be downloaded to ``destination_country`` by a person of ``role``?

    With ``remote_admin_access_is_transfer``, the person's country (where they
    access it from) is a destination too.
    """
    findings: list[Finding] = []
    if role not in rules.download_roles:
        findings.append(Finding(
            DOWNLOAD_ROLE_RULE, False, f"role {role!r} may not download data",
            dataset=artifact.id,
            remedy=f"ask for one of the roles {', '.join(sorted(rules.download_roles))}"))
    destinations = [destination_country]
    if (rules.remote_admin_access_is_transfer and person_country
            and person_country != destination_country):
        destinations.append(person_country)
    for dest in destinations:
        for j in sorted(artifact.jurisdictions):
            for c in sorted(artifact.classes):
                findings.append(judge_transfer(artifact, j, c, dest, rules, now,
                                               placement=False))
    return DownloadDecision(all(f.allowed for f in findings), tuple(findings))
