"""What each audited event records: builders from policy types to ``AuditEvent``.

Owns: the content of placement, refusal, data-registration, ground-grant,
download, policy-change and site/node state-change records, so the service writes them the same way
everywhere and the regulator's report can read them back (``report.py``).

Invariant: every event that touches data lists each datum's jurisdictions in
``details["data"]`` (``{id: {"jurisdictions": [...], "classes": [...]}}``), so
a report for a country needs nothing but the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from masnaa.audit.chain import AuditAction, AuditRecord, JsonValue, format_time, seal
from masnaa.policy.data import Dataset, TransferGround
from masnaa.policy.residency import DownloadDecision, Eligibility, Finding, ResidencyRefused
from masnaa.policy.rules import RuleSet


@dataclass(frozen=True, slots=True)
class AuditEvent:
    actor: str
    action: AuditAction
    site: str | None = None
    data_ids: tuple[str, ...] = ()
    rule_id: str | None = None
    legal_basis: str | None = None
    details: Mapping[str, JsonValue] = field(default_factory=dict)


def seal_event(prev: AuditRecord | None, at: datetime, event: AuditEvent) -> AuditRecord:
    return seal(prev, at=at, actor=event.actor, action=event.action, site=event.site,
                data_ids=event.data_ids, rule_id=event.rule_id, legal_basis=event.legal_basis,
                details=event.details)


def _data(datasets: tuple[Dataset, ...]) -> dict[str, Any]:
    return {d.id: {"version": d.version, "jurisdictions": sorted(d.jurisdictions),
                   "classes": sorted(d.classes),
                   **({"derived_from": list(d.derived_from)} if d.derived_from else {})}
            for d in datasets}


def _findings(findings: tuple[Finding, ...]) -> list[dict[str, Any]]:
    return [{"data_id": f.dataset, "jurisdiction": f.jurisdiction, "class": f.data_class,
             "rule_id": f.rule_id, "allowed": f.allowed, "basis": f.basis, "remedy": f.remedy}
            for f in findings if f.dataset is not None]


def _summary(findings: tuple[Finding, ...]) -> tuple[str | None, str | None]:
    rules = list(dict.fromkeys(f.rule_id for f in findings if f.dataset is not None))
    bases = list(dict.fromkeys(f.basis for f in findings if f.basis and f.dataset is not None))
    return (", ".join(rules) or None), ("; ".join(bases) or None)


def placement_event(actor: str, job_id: str, tenant: str, site: str,
                    datasets: tuple[Dataset, ...], eligibility: Eligibility) -> AuditEvent:
    """A job was placed at ``site``: the rules and legal bases that allowed it."""
    verdict = eligibility.site(site)
    rule_id, basis = _summary(verdict.findings)
    return AuditEvent(actor, AuditAction.PLACEMENT, site, tuple(d.id for d in datasets),
                      rule_id, basis,
                      {"job_id": job_id, "tenant": tenant, "site_country": verdict.country,
                       "rules_version": eligibility.rules_version,
                       "rules_digest": eligibility.rules_digest,
                       "data": _data(datasets), "findings": _findings(verdict.findings)})


def refusal_event(actor: str, job_id: str, tenant: str, datasets: tuple[Dataset, ...],
                  refused: ResidencyRefused) -> AuditEvent:
    f = refused.finding
    return AuditEvent(actor, AuditAction.REFUSAL, refused.site, tuple(d.id for d in datasets),
                      f.rule_id, None,
                      {"job_id": job_id, "tenant": tenant, "code": refused.code,
                       "reason": f.reason, "law": f.law, "remedy": f.remedy,
                       "data": _data(datasets)})


def registration_event(actor: str, data: Dataset) -> AuditEvent:
    return AuditEvent(actor, AuditAction.DATA_REGISTRATION, data.home_site, (data.id,), None,
                      None, {"owner": data.owner, "data": _data((data,)),
                             "serving_copy_countries": sorted(data.serving_copy_countries)})


def ground_event(actor: str, data: Dataset, ground: TransferGround) -> AuditEvent:
    return AuditEvent(actor, AuditAction.GROUND_GRANT, None, (data.id,), None, ground.describe(),
                      {"data": _data((data,)), "country": ground.country,
                       "condition": ground.condition, "kind": ground.kind.value,
                       "reference": ground.reference,
                       "expires": None if ground.expires is None else format_time(ground.expires),
                       "destinations": None if ground.destinations is None
                       else sorted(ground.destinations)})


def download_event(actor: str, data: Dataset, destination_country: str,
                   person_country: str | None, role: str, decision: DownloadDecision
                   ) -> AuditEvent:
    rule_id, basis = _summary(decision.findings)
    return AuditEvent(actor, AuditAction.DOWNLOAD, None, (data.id,), rule_id,
                      basis if decision.allowed else None,
                      {"allowed": decision.allowed, "destination_country": destination_country,
                       "person_country": person_country, "role": role,
                       "data": _data((data,)), "findings": _findings(decision.findings)})


def policy_change_event(actor: str, before: tuple[str | None, str | None] | None,
                        after: RuleSet) -> AuditEvent:
    """The rules in force became ``after``; ``before``: the (version, digest) of the last
    rules recorded, as that record has them (the file they came from may have been
    edited since)."""
    return AuditEvent(actor, AuditAction.POLICY_CHANGE, None, (), None, None,
                      {"version": after.version, "digest": after.digest,
                       "previous_version": before[0] if before else None,
                       "previous_digest": before[1] if before else None,
                       "source": after.source})


def state_change_event(actor: str, *, kind: str, name: str, site: str, state: str,
                       before: str, reason: str, evacuate: bool | None,
                       jobs: tuple[str, ...]) -> AuditEvent:
    """An operator changed a site's or a node's state (``kind``: ``site`` or ``node``).

    ``evacuate``: whether the runs there were asked to move (``None`` where it does not
    apply); ``jobs``: the runs asked to move by this change.
    """
    action = AuditAction.SITE_STATE if kind == "site" else AuditAction.NODE_STATE
    return AuditEvent(actor, action, site, (), None, None,
                      {kind: name, "state": state, "previous_state": before, "reason": reason,
                       "evacuate": evacuate, "evacuated_jobs": list(jobs)})
