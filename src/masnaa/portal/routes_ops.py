"""Operators' pages: the factory map, queue depth, nodes with drain and undrain.

Only operators see them; anyone else gets the not-found page (the pages'
existence is not a secret, but the answer is the same as for a foreign job).

The map is sites → topology domains → nodes → GPUs. A GPU is coloured by
the tenant whose admitted or running job holds it (from the job's
``placement``), or shown free, drained or down from its node's state. It is
plain HTML (a grid of small cells with text for screen readers): it scales to
thousands of GPUs without a script and prints.

Queue depth counts pending jobs and their GPUs by tenant and by preferred GPU
type (the first of the job's acceptable types).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Form, Query, Response
from sqlalchemy import select

from masnaa.portal import session
from masnaa.portal.web import PageDep, PortalRoute
from masnaa.service import jobs as svc
from masnaa.service import tenancy
from masnaa.service.tenancy import ServiceError
from masnaa.store import models as m

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
MAP_GPU_LIMIT = 2048
"""Above this many GPUs the map opens on a summary per site (each GPU cell
costs ~60 bytes; the whole map of a large factory would outgrow the page
budget); ``?site=`` shows one site in full."""
TENANT_COLOURS = 8
"""Tenants cycle through this many colour classes (``t0``…``t7`` in the CSS)."""


@dataclass
class GpuCell:
    index: int
    tenant: str | None
    job_id: str | None


@dataclass
class NodeView:
    node: m.Node
    gpu_type: str
    domain: str
    gpus: list[GpuCell]
    inner: str
    """The smaller domains of the node (e.g. its NVLink domain), smallest first."""

    @property
    def used(self) -> int:
        return sum(1 for g in self.gpus if g.job_id is not None)


@dataclass
class DomainView:
    name: str
    nodes: list[NodeView] = field(default_factory=list)


@dataclass
class SiteView:
    site: m.Site
    domains: list[DomainView]
    gpus: int
    used: int


def _top_domain(node: m.Node, site: str) -> str:
    """The largest topology domain under the site (``domains`` is smallest first)."""
    path = [d for d in node.domains if d != site]
    return path[-1] if path else site


@router.get("/ops/map")
def factory_map(page: PageDep, site: Annotated[str, Query(max_length=64)] = "") -> Response:
    page.operator()
    with page.state.db.read() as read:
        sites = tenancy.list_sites(read)
        if site:
            sites = [s for s in sites if s.name == site]
            if not sites:
                raise ServiceError("site-not-found", "no such site", status=404)
        nodes = tenancy.list_nodes(read, site or None)
        types = dict(read.execute(select(m.GpuType.id, m.GpuType.name)).all())
        tenants = dict(read.execute(select(m.Tenant.id, m.Tenant.name)).all())
        # Read-only view: which GPU each admitted or running job holds.
        held: dict[tuple[str, int], tuple[str, str]] = {}
        for job_id, tenant_id, placement in read.execute(
            select(m.Job.id, m.Job.tenant_id, m.Job.placement).where(
                m.Job.state.in_([m.JobState.ADMITTED.value, m.JobState.RUNNING.value])
            )
        ):
            for part in placement or ():
                for gpu in part.get("gpus", ()):
                    held[(str(part.get("node")), int(gpu))] = (
                        tenants.get(tenant_id, "?"), job_id
                    )
    colour = {name: f"t{i % TENANT_COLOURS}" for i, name in enumerate(sorted(tenants.values()))}
    by_site: dict[int, dict[str, DomainView]] = defaultdict(dict)
    site_names = {s.id: s.name for s in sites}
    for n in nodes:
        site_name = site_names.get(n.site_id, "?")
        domain = _top_domain(n, site_name)
        cells = []
        for i in range(n.gpu_count):
            tenant, job = held.get((n.name, i), (None, None))
            cells.append(GpuCell(i, tenant, job))
        inner = [d for d in n.domains if d not in (site_name, domain)]
        view = NodeView(n, types.get(n.gpu_type_id, "?"), domain, cells, " › ".join(inner))
        by_site[n.site_id].setdefault(domain, DomainView(domain)).nodes.append(view)
    views = []
    for s in sites:
        domains = sorted(by_site.get(s.id, {}).values(), key=lambda d: d.name)
        all_nodes = [n for d in domains for n in d.nodes]
        views.append(
            SiteView(s, domains, sum(n.node.gpu_count for n in all_nodes),
                     sum(n.used for n in all_nodes))
        )
    used_tenants = sorted({t for (t, _) in held.values() if t in colour})
    summary = not site and sum(v.gpus for v in views) > MAP_GPU_LIMIT
    return page.render(
        "ops_map.html", sites=views, colour=colour, legend=used_tenants, summary=summary,
        one_site=site,
    )


@dataclass
class Depth:
    jobs: int = 0
    gpus: int = 0


@router.get("/ops/queue")
def queue_depth(page: PageDep) -> Response:
    caller = page.operator()
    with page.state.db.read() as read:
        tenants = dict(read.execute(select(m.Tenant.id, m.Tenant.name)).all())
        depth: dict[tuple[str, str], Depth] = defaultdict(Depth)
        for tenant_id, gpu_types, tasks, per_task in read.execute(
            select(m.Job.tenant_id, m.Job.gpu_types, m.Job.tasks, m.Job.gpus_per_task).where(
                m.Job.state == m.JobState.PENDING.value
            )
        ):
            key = (tenants.get(tenant_id, "?"), (gpu_types or ["?"])[0])
            depth[key].jobs += 1
            depth[key].gpus += tasks * per_task
        view = svc.queue(read, caller, limit=1)
    gpu_types = sorted({t for (_, t) in depth})
    tenant_rows = sorted({t for (t, _) in depth})
    return page.render(
        "ops_queue.html",
        depth=depth,
        gpu_types=gpu_types,
        tenant_rows=tenant_rows,
        uses=view.tenants,
        total_gpus=view.total_gpus,
    )


@router.get("/ops/nodes")
def nodes(page: PageDep, done: str = "", node: str = "") -> Response:
    page.operator()
    with page.state.db.read() as read:
        rows = tenancy.list_nodes(read)
        sites = {s.id: s.name for s in tenancy.list_sites(read)}
        types = dict(read.execute(select(m.GpuType.id, m.GpuType.name)).all())
    notice = None
    if done in ("drained", "undrained") and node:
        notice = (
            page._("Node %(node)s is drained: no new job starts on it.", node=node)
            if done == "drained"
            else page._("Node %(node)s is back in service.", node=node)
        )
    return page.render("ops_nodes.html", nodes=rows, sites=sites, types=types, notice=notice)


def _set_drained(page: PageDep, name: str, drained: bool, reason: str, csrf: str) -> Response:
    caller = page.operator()
    session.check_csrf(page.request, csrf)
    with page.state.db.write() as write:
        tenancy.set_node_state(write, caller, name, drained=drained, reason=reason.strip())
    done = "drained" if drained else "undrained"
    return page.redirect(f"/ops/nodes?done={done}&node={name}#node-{name}")


@router.post("/ops/nodes/{name}/drain")
def drain(
    name: str,
    page: PageDep,
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    return _set_drained(page, name, True, reason, csrf_token)


@router.post("/ops/nodes/{name}/undrain")
def undrain(
    name: str,
    page: PageDep,
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    return _set_drained(page, name, False, reason, csrf_token)
