"""Rows → pure domain types, for the drivers that hand them to the core.

Nothing here writes. Each loader runs one query per table and returns
immutable domain values; the caller owns the session.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa import domain
from masnaa.store import models as m


def load_cluster(session: Session) -> domain.Cluster:
    """Every declared site, GPU type and node (drained or down nodes included:
    availability is the driver's business, via ``ClusterState``)."""
    sites = session.scalars(select(m.Site).order_by(m.Site.name)).all()
    types = session.scalars(select(m.GpuType).order_by(m.GpuType.name)).all()
    site_names = {s.id: s.name for s in sites}
    type_names = {t.id: t.name for t in types}
    nodes = []
    for n in session.scalars(select(m.Node).order_by(m.Node.name)):
        site = site_names[n.site_id]
        path = tuple(n.domains or ())
        if not path or path[-1] != site:
            path = (*path, site)
        nodes.append(
            domain.Node(
                name=n.name,
                site=site,
                gpu_type=type_names[n.gpu_type_id],
                gpu_count=n.gpu_count,
                domains=path,
                features=frozenset(n.features or ()),
            )
        )
    return domain.Cluster(
        sites=tuple(
            domain.Site(s.name, country=s.country, currency=s.currency, executor=s.executor)
            for s in sites
        ),
        gpu_types=tuple(
            domain.GpuType(t.name, memory_gb=t.memory_gb, vendor=t.vendor) for t in types
        ),
        nodes=tuple(nodes),
    )


def load_tenants(session: Session) -> dict[str, domain.Tenant]:
    out: dict[str, domain.Tenant] = {}
    for t in session.scalars(select(m.Tenant)):
        out[t.name] = domain.Tenant(
            t.name, kind=domain.TenantKind(t.kind), country=t.country, share=t.share
        )
    return out


def load_quotas(session: Session) -> tuple[domain.Quota, ...]:
    rows = session.execute(
        select(m.Quota, m.Tenant.name, m.Site.name, m.GpuType.name)
        .join(m.Tenant, m.Quota.tenant_id == m.Tenant.id)
        .join(m.Site, m.Quota.site_id == m.Site.id)
        .join(m.GpuType, m.Quota.gpu_type_id == m.GpuType.id)
    ).all()
    return tuple(
        domain.Quota(
            tenant=tenant,
            site=site,
            gpu_type=gpu_type,
            nominal=q.nominal,
            borrowing_limit=q.borrowing_limit,
            lending_limit=q.lending_limit,
        )
        for q, tenant, site, gpu_type in rows
    )


def load_priority_classes(session: Session) -> dict[str, domain.PriorityClass]:
    return {
        p.name: domain.PriorityClass(
            p.name,
            p.value,
            preemptible=p.preemptible,
            can_preempt=p.can_preempt,
            grace_seconds=p.grace_seconds,
        )
        for p in session.scalars(select(m.PriorityClass))
    }


def job_to_domain(job: m.Job, tenant: str, project: str) -> domain.Job:
    """The scheduler's view of a job row (names resolved by the caller's join)."""
    return domain.Job(
        id=job.id,
        tenant=tenant,
        project=project,
        tasks=job.tasks,
        gpus_per_task=job.gpus_per_task,
        gpu_types=tuple(job.gpu_types),
        time_limit=job.time_limit,
        priority_class=job.priority_class,
        submit_time=job.submitted_at,
        sites=tuple(job.sites) if job.sites is not None else None,
    )


def load_jobs(
    session: Session, states: tuple[m.JobState, ...]
) -> list[tuple[m.Job, domain.Job]]:
    """Jobs in ``states`` (oldest first), each with its domain value."""
    rows = session.execute(
        select(m.Job, m.Tenant.name, m.Project.name)
        .join(m.Tenant, m.Job.tenant_id == m.Tenant.id)
        .join(m.Project, m.Job.project_id == m.Project.id)
        .where(m.Job.state.in_([s.value for s in states]))
        .order_by(m.Job.submitted_at, m.Job.id)
    ).all()
    return [(job, job_to_domain(job, tenant, project)) for job, tenant, project in rows]


def placement_to_domain(placement: list[dict[str, object]]) -> domain.Placement:
    return domain.Placement(
        tuple(
            domain.PlacementSlice(str(s["node"]), tuple(int(g) for g in s["gpus"]))  # type: ignore[attr-defined]
            for s in placement
        )
    )


def placement_to_json(placement: domain.Placement) -> list[dict[str, object]]:
    return [{"node": s.node, "gpus": list(s.gpus)} for s in placement.slices]
