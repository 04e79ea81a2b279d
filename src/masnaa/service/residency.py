"""Residency in the live service: data, grounds, lawful sites, artifacts, downloads.

Owns the service side of docs/residency.md: it turns rows of
``store.residency`` into the pure policy's values (``masnaa.policy``), asks it
where a job may run, and seals each change onto the audit chain
(``service.audit``) in the same transaction as the change the record proves.

Invariants:
- a job that reads data gets ``jobs.sites`` = the LAWFUL sites of its data
  (whatever their state), so the scheduler core places it nowhere else; a
  named site its data may not go to refuses the submission (422
  ``residency-violation`` naming the rule, the law, the regulator and what
  would make it lawful); data that may go to no site at all is refused the
  same way (a job that could never run is not queued);
- a dataset's ``version`` is bumped on every ground or serving copy added:
  answers are cached per (dataset set + versions, rules digest, site views);
- visibility: another tenant's dataset or artifact is *not found*.

Terms: see docs/residency.md (jurisdiction, class, ground, serving copy).
The rules file is ``MASNAA_RESIDENCY_RULES`` or the one shipped with Masnaa.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.audit.chain import AuditRecord, verify
from masnaa.audit.events import download_event, ground_event, placement_event, registration_event
from masnaa.audit.report import RegulatorReport, ReportRefused, check_request, regulator_report
from masnaa.policy import (
    Dataset,
    DownloadDecision,
    Eligibility,
    EligibilityCache,
    GroundKind,
    ResidencyRefused,
    SiteState,
    SiteView,
    TransferGround,
    check_named_sites,
    dataset_key,
    derive_artifact,
    may_download,
)
from masnaa.policy.loader import default_rules_path, load_rules
from masnaa.policy.rules import RuleSet
from masnaa.service.audit import append_audit, audit_head, audit_records, record_policy, to_time
from masnaa.service.tenancy import Caller, ServiceError, check_country, forbidden, not_found
from masnaa.store import models as m
from masnaa.store.residency import DataKind, DatasetRow, JobDataset, TransferGroundRow

RULES_ENV = "MASNAA_RESIDENCY_RULES"
VIOLATION = "residency-violation"
Country = str


class ResidencyError(ServiceError):
    """A refusal the data's law dictates: the body also names rule, law, regulator, remedy."""

    def __init__(self, refused: ResidencyRefused, *, status: int, field: str | None = None
                 ) -> None:
        super().__init__(VIOLATION, str(refused), status=status, field=field)
        self.rule = refused.rule_id
        self.law = refused.law
        self.regulator = refused.regulator
        self.remedy = refused.remedy
        self.policy_code = refused.code


# --- the rules and the cache (one per process) ----------------------------------------------

_lock = threading.Lock()
_rules: dict[str, tuple[float, RuleSet]] = {}
_cache = EligibilityCache()


def rules_path() -> Path:
    return Path(os.environ.get(RULES_ENV) or default_rules_path())


def current_rules() -> RuleSet:
    """The operator's rules, re-read when the file changes (a policy change)."""
    path = rules_path()
    mtime = path.stat().st_mtime
    with _lock:
        known = _rules.get(str(path))
        if known is not None and known[0] == mtime:
            return known[1]
    loaded = load_rules(path)
    with _lock:
        _rules[str(path)] = (mtime, loaded)
    return loaded


def site_views(session: Session) -> tuple[SiteView, ...]:
    """Every site with its country and state, in the cluster's (declaration) order."""
    return tuple(
        SiteView(name, country, SiteState(state))
        for name, country, state in session.execute(
            select(m.Site.name, m.Site.country, m.Site.state).order_by(m.Site.id)
        )
    )


def eligibility(session: Session, datasets: Sequence[Dataset], now: float) -> Eligibility:
    """Per site, may these data be processed there (cached per data set and rules)."""
    sites = site_views(session)
    rules = current_rules()
    with _lock:
        return _cache.get(datasets, sites, rules, to_time(now), key=dataset_key(datasets))


# --- rows ↔ policy values --------------------------------------------------------------------

def _ground(g: TransferGroundRow) -> TransferGround:
    return TransferGround(
        country=g.country, condition=g.condition, kind=GroundKind(g.kind), reference=g.reference,
        expires=None if g.expires is None else to_time(g.expires),
        destinations=None if g.destinations is None else frozenset(g.destinations),
    )


def to_policy(session: Session, rows: Sequence[DatasetRow]) -> list[Dataset]:
    ids = [r.id for r in rows]
    grounds: dict[str, list[TransferGround]] = {i: [] for i in ids}
    if ids:
        for g in session.scalars(select(TransferGroundRow)
                                 .where(TransferGroundRow.dataset_id.in_(ids))
                                 .order_by(TransferGroundRow.id)):
            grounds[g.dataset_id].append(_ground(g))
    return [
        Dataset(id=r.id, home_site=r.home_site, jurisdictions=frozenset(r.jurisdictions),
                classes=frozenset(r.classes), owner=r.owner, grounds=tuple(grounds[r.id]),
                serving_copy_countries=frozenset(r.serving_copy_countries), version=r.version,
                derived_from=tuple(r.derived_from))
        for r in rows
    ]


def _visible(stmt: Any, caller: Caller) -> Any:
    return stmt if caller.is_operator else stmt.where(DatasetRow.tenant_id == caller.tenant_id)


def get_data(session: Session, caller: Caller, data_id: str, kind: str | None = None
             ) -> DatasetRow:
    stmt = _visible(select(DatasetRow).where(DatasetRow.id == data_id), caller)
    if kind is not None:
        stmt = stmt.where(DatasetRow.kind == kind)
    row: DatasetRow | None = session.scalars(stmt).first()
    if row is None:
        raise not_found(kind or "dataset", data_id)
    return row


def list_data(session: Session, caller: Caller, kind: str | None = None) -> list[DatasetRow]:
    stmt = _visible(select(DatasetRow), caller).order_by(DatasetRow.created_at, DatasetRow.id)
    if kind is not None:
        stmt = stmt.where(DatasetRow.kind == kind)
    return list(session.scalars(stmt))


def grounds_of(session: Session, data_id: str) -> list[TransferGroundRow]:
    return list(session.scalars(select(TransferGroundRow)
                                .where(TransferGroundRow.dataset_id == data_id)
                                .order_by(TransferGroundRow.id)))



# --- datasets and grounds --------------------------------------------------------------------

class GroundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    country: str = Field(min_length=2, max_length=2,
                         description="Jurisdiction it moves data out of.")
    condition: str = Field(min_length=1, max_length=64,
                           description="The rules' condition it satisfies, e.g. express_consent.")
    kind: GroundKind
    reference: str | None = Field(default=None, max_length=128)
    expires: datetime | None = Field(default=None, description="Timezone-aware; null: none.")
    destinations: list[str] | None = Field(default=None, max_length=64,
                                           description="Countries covered; null: any.")


class DatasetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    home_site: str = Field(min_length=1, max_length=64)
    jurisdiction: str | None = Field(default=None, min_length=2, max_length=2,
                                     description="Country whose law governs it; default: "
                                     "the home site's country.")
    data_class: str = Field(min_length=1, max_length=64, description="e.g. personal, health")
    owner: str | None = Field(default=None, max_length=128)
    tenant: str | None = Field(default=None, description="Operators: the tenant it belongs to.")
    serving_copy_countries: list[str] = Field(default_factory=list, max_length=16)
    grounds: list[GroundIn] = Field(default_factory=list, max_length=64)
    uri: str = Field(default="", max_length=4096)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def _country(code: str, field: str) -> str:
    """A country as typed, in capitals: ``invalid-country`` unless it is an alpha-2 code."""
    return check_country(code.upper(), field)


def _jurisdiction(session: Session, code: str, rules: RuleSet) -> str:
    """A jurisdiction the rules know, or the country of a site here (data under it can
    be processed there, in-country); else ``unknown-country``: every job reading the
    data would be refused (``jurisdiction.unknown``)."""
    code = _country(code, "jurisdiction")
    if code in rules.countries:
        return code
    sites = set(session.scalars(select(m.Site.country)))
    if code not in sites:
        raise ServiceError(
            "unknown-country",
            f"jurisdiction {code!r} has no residency rules and no site of this factory is "
            f"in it, so no job could read the data: use one of "
            f"{', '.join(sorted({*rules.countries, *sites}))}, or add the country to the "
            "rules", field="jurisdiction")
    return code


def _ground_value(g: GroundIn, rules: RuleSet, field: str = "") -> TransferGround:
    if g.condition not in rules.condition_kinds:
        # A ground under a name no rule asks for would be recorded, audited and never
        # count: the placement would refuse the transfer with no hint why.
        raise ServiceError(
            "unknown-condition",
            f"condition {g.condition!r} is not one the residency rules know; use one of "
            f"{', '.join(sorted(rules.condition_kinds))}",
            status=422, field=f"{field}condition")
    if g.expires is not None and g.expires.utcoffset() is None:
        raise ServiceError("invalid-ground", "expires must carry a timezone, e.g. "
                           "2027-03-31T00:00:00Z", status=422, field="expires")
    country = _country(g.country, f"{field}country")
    destinations = None if g.destinations is None else frozenset(
        _country(d, f"{field}destinations[{i}]") for i, d in enumerate(g.destinations))
    try:
        return TransferGround(
            country=country, condition=g.condition, kind=g.kind, reference=g.reference,
            expires=g.expires, destinations=destinations)
    except ValueError as exc:
        raise ServiceError("invalid-ground", str(exc), status=422) from None


def _ground_row(data_id: str, g: TransferGround, caller: Caller, now: float
                ) -> TransferGroundRow:
    return TransferGroundRow(
        dataset_id=data_id, country=g.country, condition=g.condition, kind=g.kind.value,
        reference=g.reference, expires=None if g.expires is None else g.expires.timestamp(),
        destinations=None if g.destinations is None else sorted(g.destinations),
        granted_at=now, granted_by=caller.user)


@dataclass(frozen=True, slots=True)
class Registered:
    row: DatasetRow
    unknown_class: bool
    counted_as: str | None


def register_dataset(session: Session, caller: Caller, spec: DatasetIn, *, now: float
                     ) -> Registered:
    """Store a dataset (version 1) and its grounds; audit the registration and each ground."""
    if caller.is_operator:
        if spec.tenant is None:
            raise ServiceError("tenant-required", "operators name the tenant the data belongs "
                               "to: add \"tenant\"", status=422, field="tenant")
        tenant = session.scalars(select(m.Tenant).where(m.Tenant.name == spec.tenant)).first()
        if tenant is None:
            raise not_found("tenant", spec.tenant)
        tenant_id = tenant.id
    else:
        if spec.tenant is not None and spec.tenant != caller.tenant:
            raise not_found("tenant", spec.tenant)
        assert caller.tenant_id is not None
        tenant_id = caller.tenant_id
    site = session.scalars(select(m.Site).where(m.Site.name == spec.home_site)).first()
    if site is None:
        known = ", ".join(session.scalars(select(m.Site.name).order_by(m.Site.id)))
        raise ServiceError("unknown-site", f"home_site {spec.home_site!r} is not a site of this "
                           f"factory: use one of {known or '(none declared)'}", status=422,
                           field="home_site")
    rules = current_rules()
    # Every field is checked before anything is written (the policy record included).
    jurisdiction = _jurisdiction(session, spec.jurisdiction or site.country, rules)
    serving = frozenset(_country(c, f"serving_copy_countries[{i}]")
                        for i, c in enumerate(spec.serving_copy_countries))
    data_id = _new_id("d")
    grounds = [_ground_value(g, rules, f"grounds[{i}].") for i, g in enumerate(spec.grounds)]
    try:
        value = Dataset(id=data_id, home_site=site.name, jurisdictions=frozenset({jurisdiction}),
                        classes=frozenset({spec.data_class}), owner=spec.owner or caller.user,
                        grounds=tuple(grounds), serving_copy_countries=serving)
    except ValueError as exc:
        raise ServiceError("invalid-dataset", str(exc), status=422) from None
    record_policy(session, "api", now)
    row = DatasetRow(id=data_id, tenant_id=tenant_id, name=spec.name, kind=DataKind.DATASET,
                     home_site=site.name, jurisdictions=[jurisdiction],
                     classes=[spec.data_class], owner=value.owner,
                     serving_copy_countries=sorted(value.serving_copy_countries), version=1,
                     derived_from=[], job_id=None, uri=spec.uri, created_at=now,
                     created_by=caller.user)
    session.add(row)
    session.flush()
    for g in grounds:
        session.add(_ground_row(data_id, g, caller, now))
    append_audit(session, registration_event(caller.user, value), now)
    for g in grounds:
        append_audit(session, ground_event(caller.user, value, g), now)
    unknown = spec.data_class not in rules.known_classes
    return Registered(row, unknown, rules.unknown_class if unknown else None)


def _may_change(caller: Caller, row: DatasetRow) -> None:
    if not (caller.admin_of(row.tenant_id) or row.created_by == caller.user):
        raise forbidden("only the data's registrant or a tenant admin may record grounds for it")


def grant_ground(session: Session, caller: Caller, data_id: str, spec: GroundIn, *, now: float
                 ) -> DatasetRow:
    """Record a transfer ground; bump the data's version; audit the grant."""
    row = get_data(session, caller, data_id)
    _may_change(caller, row)
    g = _ground_value(spec, current_rules())
    if g.country not in row.jurisdictions:
        raise ServiceError("invalid-ground", f"ground {g.condition!r} is under {g.country}, but "
                           f"{row.id} is under {', '.join(row.jurisdictions)}: name one of those",
                           status=422, field="country")
    record_policy(session, "api", now)
    session.add(_ground_row(row.id, g, caller, now))
    row.version += 1
    session.flush()
    value = to_policy(session, [row])[0]
    append_audit(session, ground_event(caller.user, value, g), now)
    return row


def add_serving_copy(session: Session, caller: Caller, data_id: str, country: str, *,
                     now: float) -> DatasetRow:
    """Record that a serving copy stays in ``country`` (Kenya's mode); bump the version."""
    row = get_data(session, caller, data_id)
    _may_change(caller, row)
    country = _country(country, "country")
    if country not in row.serving_copy_countries:
        row.serving_copy_countries = sorted({*row.serving_copy_countries, country})
        row.version += 1
        session.flush()
        value = to_policy(session, [row])[0]
        append_audit(session, registration_event(caller.user, value), now)
    return row


# --- jobs ---------------------------------------------------------------------------------

def job_sites(session: Session, tenant_id: int, data_ids: Sequence[str],
              named: Sequence[str] | None, *, now: float, field: str = "datasets"
              ) -> list[str]:
    """The lawful sites of a job reading ``data_ids`` (its ``jobs.sites``), or a refusal."""
    wanted = list(dict.fromkeys(data_ids))
    rows = {r.id: r for r in session.scalars(
        select(DatasetRow).where(DatasetRow.id.in_(wanted), DatasetRow.tenant_id == tenant_id))}
    for i, d in enumerate(wanted):
        if d not in rows:
            err = not_found("dataset", d)
            err.field = f"{field}[{i}]"
            raise err
    values = to_policy(session, [rows[d] for d in wanted])
    e = eligibility(session, values, now)
    try:
        return list(check_named_sites(named, e))
    except ResidencyRefused as refused:
        raise ResidencyError(refused, status=422,
                             field="sites" if named is not None else field) from None


def job_data(session: Session, job_ids: Iterable[str]) -> dict[str, list[DatasetRow]]:
    ids = list(job_ids)
    out: dict[str, list[DatasetRow]] = {}
    if not ids:
        return out
    for job_id, row in session.execute(
            select(JobDataset.job_id, DatasetRow)
            .join(DatasetRow, DatasetRow.id == JobDataset.dataset_id)
            .where(JobDataset.job_id.in_(ids)).order_by(DatasetRow.id)):
        out.setdefault(job_id, []).append(row)
    return out


def audit_placements(session: Session, admitted: Iterable[Any], *, now: float,
                     actor: str = "scheduler") -> int:
    """For each admitted job that reads data, seal the proof that its site was lawful.

    Called by the control loop inside the transaction that admits the jobs.
    ``admitted`` items have ``job_id`` and ``site``. Returns records written.
    """
    by_job = {a.job_id: a.site for a in admitted}
    reads = job_data(session, by_job)
    if not reads:
        return 0
    # The rules these placements were judged under are on the chain before them.
    record_policy(session, actor, now)
    tenants = dict(session.execute(
        select(m.Job.id, m.Tenant.name).join(m.Tenant, m.Job.tenant_id == m.Tenant.id)
        .where(m.Job.id.in_(list(reads)))).all())
    written = 0
    for job_id, rows in reads.items():
        values = tuple(to_policy(session, rows))
        e = eligibility(session, values, now)
        event = placement_event(actor, job_id, tenants.get(job_id, "?"), by_job[job_id],
                                values, e)
        append_audit(session, event, now)
        written += 1
    return written


def _job(session: Session, caller: Caller, job_id: str) -> m.Job:
    stmt = select(m.Job).where(m.Job.id == job_id)
    if not caller.is_operator:
        stmt = stmt.where(m.Job.tenant_id == caller.tenant_id)
    job: m.Job | None = session.scalars(stmt).first()
    if job is None:
        raise not_found("job", job_id)
    return job


@dataclass(frozen=True, slots=True)
class JobResidency:
    job_id: str
    data: list[DatasetRow]
    eligibility: Eligibility | None


def explain_job(session: Session, caller: Caller, job_id: str, *, now: float) -> JobResidency:
    """Per site, why a job's data may or may not be processed there (now)."""
    job = _job(session, caller, job_id)
    rows = job_data(session, [job.id]).get(job.id, [])
    values = to_policy(session, rows)
    return JobResidency(job.id, rows, eligibility(session, values, now))


# --- artifacts and downloads -----------------------------------------------------------------

class ArtifactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    uri: str = Field(default="", max_length=4096, description="Where the output lies at its site.")


def register_artifact(session: Session, caller: Caller, job_id: str, spec: ArtifactIn, *,
                      now: float) -> DatasetRow:
    """An output of ``job_id``: every class and jurisdiction of what the job read."""
    job = _job(session, caller, job_id)
    if job.site is None:
        raise ServiceError("not-placed", f"job {job.id} has not run anywhere yet: register its "
                           "outputs once it has been placed", status=409)
    rows = job_data(session, [job.id]).get(job.id, [])
    if not rows:
        raise ServiceError("no-inputs", f"job {job.id} declared no datasets, so its outputs "
                           "carry no residency: declare the data a job reads when submitting",
                           status=409)
    tenant = session.get(m.Tenant, job.tenant_id)
    artifact = derive_artifact(_new_id("a"), to_policy(session, rows), home_site=job.site,
                               owner=tenant.name if tenant else caller.user)
    row = DatasetRow(id=artifact.id, tenant_id=job.tenant_id, name=spec.name,
                     kind=DataKind.ARTIFACT, home_site=artifact.home_site,
                     jurisdictions=sorted(artifact.jurisdictions),
                     classes=sorted(artifact.classes), owner=artifact.owner,
                     serving_copy_countries=[], version=1,
                     derived_from=list(artifact.derived_from), job_id=job.id, uri=spec.uri,
                     created_at=now, created_by=caller.user)
    session.add(row)
    session.flush()
    append_audit(session, registration_event(caller.user, artifact), now)
    return row


def _role(caller: Caller, row: DatasetRow) -> str:
    if row.created_by == caller.user:
        return "owner"
    return caller.role.value


@dataclass(frozen=True, slots=True)
class Download:
    row: DatasetRow
    decision: DownloadDecision
    record: AuditRecord


def check_download(session: Session, caller: Caller, data_id: str, destination: str,
                   person_country: str | None, *, now: float) -> Download:
    """Judge a download and audit it either way; the caller commits, THEN refuses if refused."""
    row = get_data(session, caller, data_id)
    value = to_policy(session, [row])[0]
    dest = _country(destination, "destination")
    person = _country(person_country, "person_country") if person_country else None
    role = _role(caller, row)
    decision = may_download(value, dest, person, role, current_rules(), to_time(now))
    record = append_audit(session, download_event(caller.user, value, dest, person, role,
                                                  decision), now)
    return Download(row, decision, record)


def refusal_of(decision: DownloadDecision) -> ResidencyError | None:
    try:
        decision.raise_if_refused()
    except ResidencyRefused as refused:
        return ResidencyError(refused, status=403, field="destination")
    return None


# --- the regulator's report ------------------------------------------------------------------

def report(session: Session, country: str, start: datetime, end: datetime) -> RegulatorReport:
    """Which jobs touched ``country``'s data in ``[start, end)``, where, on which grounds."""
    rules = current_rules()
    try:
        country = check_request(country, start, end, rules)
    except ReportRefused as refused:
        raise ServiceError(refused.code, refused.message, field=refused.field,
                           status=422 if refused.code == "invalid-period" else 400) from None
    records = audit_records(session)
    checked = verify(records, audit_head(session))
    if not checked.ok:
        raise ServiceError("audit-broken", f"the audit chain is broken, no report can be built "
                           f"from it: {checked.message}", status=409)
    return regulator_report(records, country, start, end, rules)
