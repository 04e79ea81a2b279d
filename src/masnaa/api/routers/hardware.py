"""``/api/v1/sites``, ``nodes`` (drain/undrain for operators), ``quotas``, ``priority-classes``.

A drain evacuates the node's runs unless ``evacuate`` is false
(``service.evacuation``); the answer names the jobs asked to move.

Everyone signed in may read the hardware and priority classes: they are what
a submission is validated against. A class's ``tenants`` (who may use it) name
only the caller's own tenant to anyone but an operator. Quotas are scoped like
tenants.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.api.deps import CurrentCaller, State, forbid_unknown_query
from masnaa.api.errors import ERROR_RESPONSES
from masnaa.api.schemas import (
    DrainIn,
    NodeChangeOut,
    NodeOut,
    PriorityClassOut,
    QuotaIn,
    QuotaOut,
    SiteOut,
    UndrainIn,
)
from masnaa.service import evacuation
from masnaa.service import tenancy as svc
from masnaa.service.tenancy import Caller
from masnaa.store import models as m

router = APIRouter(tags=["factory"], responses=ERROR_RESPONSES,
                   dependencies=[Depends(forbid_unknown_query)])


def _node_out(session: Session, n: m.Node) -> NodeOut:
    site = session.get(m.Site, n.site_id)
    gpu = session.get(m.GpuType, n.gpu_type_id)
    assert site is not None and gpu is not None
    return NodeOut(
        name=n.name, site=site.name, gpu_type=gpu.name, gpu_count=n.gpu_count,
        domains=list(n.domains), state=n.state, reason=n.reason, virtual=n.virtual,
    )


@router.get("/sites", response_model=list[SiteOut], summary="Sites of the factory")
def list_sites(state: State, caller: CurrentCaller) -> list[SiteOut]:
    with state.db.read() as session:
        return [
            SiteOut(name=s.name, country=s.country, currency=s.currency, executor=s.executor,
                    state=s.state, reason=s.reason)
            for s in svc.list_sites(session)
        ]


@router.get("/nodes", response_model=list[NodeOut], summary="Nodes of the factory")
def list_nodes(state: State, caller: CurrentCaller, site: str | None = None) -> list[NodeOut]:
    with state.db.read() as session:
        return [_node_out(session, n) for n in svc.list_nodes(session, site)]


@router.post("/nodes/{name}/drain", response_model=NodeChangeOut,
             summary="Drain a node, moving its jobs elsewhere unless evacuate is false (operators)")
def drain(name: str, body: DrainIn, state: State, caller: CurrentCaller) -> NodeChangeOut:
    with state.db.write() as session:
        node, change = evacuation.drain_node(
            session, caller, name, reason=body.reason, evacuate_runs=body.evacuate, now=state.now()
        )
        return NodeChangeOut(**_node_out(session, node).model_dump(),
                             evacuated=list(change.evacuated))


@router.post("/nodes/{name}/undrain", response_model=NodeOut, summary="Undrain a node (operators)")
def undrain(name: str, body: UndrainIn, state: State, caller: CurrentCaller) -> NodeOut:
    with state.db.write() as session:
        node, _ = evacuation.undrain_node(session, caller, name, reason=body.reason,
                                          now=state.now())
        return _node_out(session, node)


def _quota_out(session: Session, q: m.Quota) -> QuotaOut:
    tenant = session.get(m.Tenant, q.tenant_id)
    site = session.get(m.Site, q.site_id)
    gpu = session.get(m.GpuType, q.gpu_type_id)
    assert tenant is not None and site is not None and gpu is not None
    return QuotaOut(
        tenant=tenant.name, site=site.name, gpu_type=gpu.name, nominal=q.nominal,
        borrowing_limit=q.borrowing_limit, lending_limit=q.lending_limit,
    )


@router.get("/quotas", response_model=list[QuotaOut], summary="Quotas you can see")
def list_quotas(state: State, caller: CurrentCaller, tenant: str | None = None) -> list[QuotaOut]:
    with state.db.read() as session:
        return [_quota_out(session, q) for q in svc.list_quotas(session, caller, tenant)]


@router.put("/quotas", response_model=QuotaOut, summary="Set a quota (operators)")
def set_quota(body: QuotaIn, state: State, caller: CurrentCaller) -> QuotaOut:
    with state.db.write() as session:
        q = svc.set_quota(
            session, caller, tenant=body.tenant, site=body.site, gpu_type=body.gpu_type,
            nominal=body.nominal, borrowing_limit=body.borrowing_limit,
            lending_limit=body.lending_limit,
        )
        return _quota_out(session, q)


@router.get(
    "/priority-classes", response_model=list[PriorityClassOut], summary="Priority classes"
)
def priority_classes(state: State, caller: CurrentCaller) -> list[PriorityClassOut]:
    with state.db.read() as session:
        rows = list(session.scalars(select(m.PriorityClass).order_by(m.PriorityClass.value)))
        return [
            PriorityClassOut(name=p.name, value=p.value, preemptible=p.preemptible,
                             can_preempt=p.can_preempt, grace_seconds=p.grace_seconds,
                             open_to_all=not p.tenants, tenants=_tenants_shown(caller, p))
            for p in rows
        ]


def _tenants_shown(caller: Caller, p: m.PriorityClass) -> list[str]:
    """A class's tenants as the caller may read them: other tenants' names are not
    shown to anyone but operators (lists never mention another tenant)."""
    names = sorted(p.tenants or ())
    return names if caller.is_operator else [t for t in names if t == caller.tenant]
