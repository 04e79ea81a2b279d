"""``/api/v1/datasets``, ``artifacts``, ``jobs/{id}/artifacts|residency``, ``sites/{name}/state``,
``audit/verify|export`` and ``regulator-report``: residency over HTTP (docs/residency.md).

A refusal the data's law dictates is 422 (submit, a named site) or 403 (a
download) with code ``residency-violation``; its error body also carries
``rule``, ``law``, ``regulator`` and ``remedy``. A refused download is
audited before it is refused (the record is committed, then the 403 sent).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from masnaa.api.deps import CurrentCaller, State, forbid_unknown_query
from masnaa.api.errors import ERROR_RESPONSES
from masnaa.api.schemas import SiteChangeOut
from masnaa.audit.report import render_csv, render_json
from masnaa.service import evacuation
from masnaa.service import residency as svc
from masnaa.service.audit import export_jsonl, record_policy, verify_chain
from masnaa.service.tenancy import require_operator
from masnaa.store import models as m
from masnaa.store.residency import DataKind, DatasetRow

log = logging.getLogger("masnaa.api.residency")

router = APIRouter(tags=["residency"], responses=ERROR_RESPONSES,
                   dependencies=[Depends(forbid_unknown_query)])


def install(app: FastAPI) -> None:
    """The error body of a residency refusal: the usual fields plus rule, law, remedy."""

    @app.exception_handler(svc.ResidencyError)
    async def _residency(_: Request, exc: svc.ResidencyError) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message, "field": exc.field,
                       "rule": exc.rule, "law": exc.law, "regulator": exc.regulator,
                       "remedy": exc.remedy, "policy_code": exc.policy_code}},
            status_code=exc.status)


class GroundOut(BaseModel):
    country: str
    condition: str
    kind: str
    reference: str | None
    expires: float | None
    destinations: list[str] | None
    granted_at: float
    granted_by: str


class DataOut(BaseModel):
    id: str
    kind: str
    name: str
    tenant: str
    home_site: str
    jurisdictions: list[str]
    classes: list[str]
    strictest_class: str
    owner: str
    version: int
    serving_copy_countries: list[str]
    derived_from: list[str]
    job_id: str | None
    uri: str
    created_at: float
    created_by: str
    grounds: list[GroundOut] = Field(default_factory=list)
    note: str | None = None


def _out(session: Session, row: DatasetRow, note: str | None = None) -> DataOut:
    tenant = session.get(m.Tenant, row.tenant_id)
    rules = svc.current_rules()
    return DataOut(
        id=row.id, kind=row.kind, name=row.name, tenant=tenant.name if tenant else "?",
        home_site=row.home_site, jurisdictions=list(row.jurisdictions),
        classes=list(row.classes), strictest_class=rules.strictest(frozenset(row.classes)),
        owner=row.owner, version=row.version,
        serving_copy_countries=list(row.serving_copy_countries),
        derived_from=list(row.derived_from), job_id=row.job_id, uri=row.uri,
        created_at=row.created_at, created_by=row.created_by,
        grounds=[GroundOut(country=g.country, condition=g.condition, kind=g.kind,
                           reference=g.reference, expires=g.expires,
                           destinations=g.destinations, granted_at=g.granted_at,
                           granted_by=g.granted_by) for g in svc.grounds_of(session, row.id)],
        note=note,
    )


@router.post("/datasets", status_code=201, response_model=DataOut, summary="Register a dataset")
def register(body: svc.DatasetIn, state: State, caller: CurrentCaller) -> DataOut:
    with state.db.write() as session:
        done = svc.register_dataset(session, caller, body, now=state.now())
        note = (f"class {body.data_class!r} is not in the rules: it counts as "
                f"{done.counted_as!r}" if done.unknown_class else None)
        return _out(session, done.row, note)


@router.get("/datasets", response_model=list[DataOut], summary="Datasets you can see")
def list_datasets(state: State, caller: CurrentCaller) -> list[DataOut]:
    with state.db.read() as session:
        return [_out(session, r) for r in svc.list_data(session, caller, DataKind.DATASET)]


@router.get("/datasets/{data_id}", response_model=DataOut, summary="One dataset or artifact")
def show(data_id: str, state: State, caller: CurrentCaller) -> DataOut:
    with state.db.read() as session:
        return _out(session, svc.get_data(session, caller, data_id))


@router.post("/datasets/{data_id}/grounds", response_model=DataOut,
             summary="Record a transfer ground (consent, authorisation, contract, ...)")
def grant(data_id: str, body: svc.GroundIn, state: State, caller: CurrentCaller) -> DataOut:
    with state.db.write() as session:
        return _out(session, svc.grant_ground(session, caller, data_id, body, now=state.now()))


class ServingCopyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    country: str = Field(min_length=2, max_length=2)


@router.post("/datasets/{data_id}/serving-copies", response_model=DataOut,
             summary="Record a serving copy kept in a country")
def serving_copy(data_id: str, body: ServingCopyIn, state: State, caller: CurrentCaller
                 ) -> DataOut:
    with state.db.write() as session:
        row = svc.add_serving_copy(session, caller, data_id, body.country, now=state.now())
        return _out(session, row)


@router.post("/jobs/{job_id}/artifacts", status_code=201, response_model=DataOut,
             summary="Register an output of a job (inherits its inputs' residency)")
def artifact(job_id: str, body: svc.ArtifactIn, state: State, caller: CurrentCaller) -> DataOut:
    with state.db.write() as session:
        return _out(session, svc.register_artifact(session, caller, job_id, body,
                                                   now=state.now()))


@router.get("/artifacts", response_model=list[DataOut], summary="Artifacts you can see")
def list_artifacts(state: State, caller: CurrentCaller) -> list[DataOut]:
    with state.db.read() as session:
        return [_out(session, r) for r in svc.list_data(session, caller, DataKind.ARTIFACT)]


class DownloadOut(BaseModel):
    artifact: str
    allowed: bool
    destination: str
    uri: str
    legal_basis: str | None
    audit_seq: int


@router.get("/artifacts/{data_id}/download", response_model=DownloadOut,
            summary="May this artifact (or dataset) go to a country? Audited either way")
def download(
    data_id: str,
    state: State,
    caller: CurrentCaller,
    destination: Annotated[str, Query(min_length=2, max_length=2)],
    person_country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
) -> DownloadOut:
    with state.db.write() as session:
        d = svc.check_download(session, caller, data_id, destination, person_country,
                               now=state.now())
        out = DownloadOut(artifact=d.row.id, allowed=d.decision.allowed,
                          destination=destination.upper(), uri=d.row.uri if d.decision.allowed
                          else "", legal_basis=d.record.legal_basis, audit_seq=d.record.seq)
    refused = svc.refusal_of(d.decision)
    if refused is not None:
        raise refused  # after the commit: the refusal stays on record
    return out


class SiteVerdictOut(BaseModel):
    site: str
    country: str
    state: str
    lawful: bool
    eligible: bool
    findings: list[dict[str, Any]]


class ResidencyOut(BaseModel):
    job_id: str
    data: list[str]
    rules_version: str
    rules_digest: str
    sites: list[SiteVerdictOut]
    lines: list[str]


@router.get("/jobs/{job_id}/residency", response_model=ResidencyOut,
            summary="Per site: why a job's data may or may not be processed there")
def job_residency(job_id: str, state: State, caller: CurrentCaller) -> ResidencyOut:
    with state.db.read() as session:
        x = svc.explain_job(session, caller, job_id, now=state.now())
    e = x.eligibility
    assert e is not None
    return ResidencyOut(
        job_id=x.job_id, data=[r.id for r in x.data], rules_version=e.rules_version,
        rules_digest=e.rules_digest,
        sites=[SiteVerdictOut(site=s.site, country=s.country, state=s.state.value,
                              lawful=s.lawful, eligible=s.eligible,
                              findings=[{"rule": f.rule_id, "allowed": f.allowed,
                                         "reason": f.reason, "data_id": f.dataset,
                                         "jurisdiction": f.jurisdiction, "class": f.data_class,
                                         "law": f.law, "regulator": f.regulator,
                                         "basis": f.basis, "remedy": f.remedy}
                                        for f in s.findings])
               for s in e.sites],
        lines=e.explain(),
    )


class SiteStateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["up", "drained", "unreachable"]
    reason: str = Field(default="", max_length=500)
    evacuate: bool | None = Field(
        default=None,
        description="Only with state 'drained': move the jobs running there (the default; "
        "each is preempted with its class's grace and requeued where its data may go), or "
        "false to let them run to their end.",
    )


@router.post("/sites/{name}/state", response_model=SiteChangeOut,
             summary="Drain a site, mark it unreachable, or bring it up (operators)")
def site_state(name: str, body: SiteStateIn, state: State, caller: CurrentCaller
               ) -> SiteChangeOut:
    with state.db.write() as session:
        s, change = evacuation.set_site_state(session, caller, name, body.state, body.reason,
                                              evacuate_runs=body.evacuate, now=state.now())
        return SiteChangeOut(name=s.name, country=s.country, currency=s.currency,
                             executor=s.executor, state=s.state, reason=s.reason,
                             evacuated=list(change.evacuated))


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    head: dict[str, Any] | None
    reason: str | None
    message: str
    position: int | None
    seq: int | None


@router.get("/audit/verify", response_model=VerifyOut,
            summary="Verify the audit chain in the database (operators)")
def audit_verify(state: State, caller: CurrentCaller) -> VerifyOut:
    require_operator(caller, "read the audit log")
    with state.db.read() as session:
        v = verify_chain(session)
    return VerifyOut(ok=v.ok, checked=v.checked,
                     head=None if v.head is None else {"seq": v.head[0], "hash": v.head[1]},
                     reason=None if v.reason is None else v.reason.value, message=v.message,
                     position=v.position, seq=v.seq)


@router.get("/audit/export", summary="The audit chain as JSON lines (operators)",
            response_class=Response)
def audit_export(state: State, caller: CurrentCaller) -> Response:
    require_operator(caller, "read the audit log")
    with state.db.read() as session:
        body = export_jsonl(session)
    return Response(body, media_type="application/x-ndjson")


@router.get("/regulator-report", summary="Which jobs touched a country's data (operators)",
            response_class=Response)
def regulator_report(
    state: State,
    caller: CurrentCaller,
    country: Annotated[str, Query(min_length=2, max_length=2)],
    since: datetime,
    until: datetime,
    format: Literal["json", "csv"] = "json",
) -> Response:
    require_operator(caller, "build regulator reports")
    with state.db.read() as session:
        r = svc.report(session, country, since, until)
    if format == "csv":
        return Response(render_csv(r), media_type="text/csv")
    return Response(render_json(r), media_type="application/json")



def record_rules_in_force(db: Any, now: float) -> None:
    """At start: audit a policy change when the rules differ from the last ones recorded."""
    try:
        with db.write() as session:
            record_policy(session, "api", now)
    except Exception as exc:  # a database not migrated yet must not stop the process
        log.warning("could not record the residency rules in force: %s", exc)
