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

Utilisation over time (``/ops/util``) is ``service.history.utilisation``: GPUs
held per site, from the run segments the control loop records, against the
nodes declared now. Nodes are drained and sites drained, marked unreachable
or brought back with ``service.evacuation``, the functions behind
``POST /api/v1/nodes/{name}/drain`` and ``POST /api/v1/sites/{name}/state``: a
drained node or site takes no new job, and its runs are moved (preempted with
their grace, requeued, run again only at sites their data may go to) unless
the form's "move its jobs" box is unticked, when they run to their end; the
runs at a site marked unreachable are stopped and requeued by the control loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.portal import session
from masnaa.portal.charts import Series, line_chart
from masnaa.portal.labels import N_
from masnaa.portal.web import Page, PageDep, PortalRoute
from masnaa.service import evacuation, history, job_views, tenancy
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


def _held(read: Session, tenants: dict[int, str]) -> dict[tuple[str, int], tuple[str, str]]:
    """Read-only view: (node, GPU) → (tenant, job) for every admitted or running job."""
    held: dict[tuple[str, int], tuple[str, str]] = {}
    for job_id, tenant_id, placement in read.execute(
        select(m.Job.id, m.Job.tenant_id, m.Job.placement).where(
            m.Job.state.in_([m.JobState.ADMITTED.value, m.JobState.RUNNING.value])
        )
    ):
        for part in placement or ():
            for gpu in part.get("gpus", ()):
                held[(str(part.get("node")), int(gpu))] = (tenants.get(tenant_id, "?"), job_id)
    return held


def _jobs_on_nodes(read: Session) -> dict[str, list[str]]:
    """Node → the admitted or running jobs placed on it (sorted, each once)."""
    out: dict[str, set[str]] = defaultdict(set)
    for (node, _), (_, job_id) in _held(read, {}).items():
        out[node].add(job_id)
    return {node: sorted(jobs) for node, jobs in out.items()}


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
        held = _held(read, tenants)
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
        view = job_views.queue(read, caller, limit=1)
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
        running = _jobs_on_nodes(read)
    notice = None
    if done in NODE_DONE and node:
        notice = page._(NODE_DONE[done], node=node)
    return page.render(
        "ops_nodes.html", nodes=rows, sites=sites, types=types, notice=notice, running=running
    )


NODE_DONE = {  # "drained": runs were asked to move; "drained-finish": none were
    "drained": N_("Node %(node)s is drained: its running jobs are being moved elsewhere."),
    "drained-finish": N_("Node %(node)s is drained: no new job starts on it."),
    "undrained": N_("Node %(node)s is back in service."),
}


def _evacuate(page: Page, value: str) -> bool | Response:
    """The "move its jobs" checkbox: ticked sends ``1``, unticked sends nothing."""
    if value not in ("", "1"):
        return page.render(
            "error.html", status=422, title=page._("Not allowed"),
            message=page._("Choose one of: %(choices)s.", choices="evacuate=1, evacuate="),
        )
    return value == "1"


@router.post("/ops/nodes/{name}/drain")
def drain(
    name: str,
    page: PageDep,
    reason: Annotated[str, Form(max_length=500)] = "",
    evacuate: Annotated[str, Form(max_length=8)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    caller = page.operator()
    session.check_csrf(page.request, csrf_token)
    moving = _evacuate(page, evacuate)
    if isinstance(moving, Response):
        return moving
    with page.state.db.write() as write:
        _, change = evacuation.drain_node(write, caller, name, reason=reason.strip(),
                                          evacuate_runs=moving, now=page.now)
    done = "drained" if change.evacuated else "drained-finish"  # the notice says what happened
    return page.redirect(f"/ops/nodes?done={done}&node={name}#node-{name}")


@router.post("/ops/nodes/{name}/undrain")
def undrain(
    name: str,
    page: PageDep,
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    caller = page.operator()
    session.check_csrf(page.request, csrf_token)
    with page.state.db.write() as write:
        evacuation.undrain_node(write, caller, name, reason=reason.strip(), now=page.now)
    return page.redirect(f"/ops/nodes?done=undrained&node={name}#node-{name}")


# --- utilisation over time -----------------------------------------------------------------

WINDOWS: dict[str, tuple[float, int, str]] = {
    "hour": (3600.0, 60, "HH:mm"),
    "day": (86400.0, 96, "HH:mm"),
    "week": (7 * 86400.0, 168, "d MMM"),
    "month": (30 * 86400.0, 120, "d MMM"),
}
"""Window → (seconds, buckets, axis label pattern)."""
WINDOW_LABELS = {
    "hour": N_("last hour"),
    "day": N_("last 24 hours"),
    "week": N_("last 7 days"),
    "month": N_("last 30 days"),
}


def _axis(page: Page, pattern: str) -> Callable[[float], str]:
    from babel.dates import format_datetime

    def fmt(seconds: float) -> str:
        return format_datetime(
            datetime.fromtimestamp(seconds, UTC), pattern, tzinfo=UTC, locale=page.lang.code
        )

    return fmt


@router.get("/ops/util")
def utilisation(
    page: PageDep, window: Literal["hour", "day", "week", "month"] = "day"
) -> Response:
    page.operator()
    span, buckets, pattern = WINDOWS[window]
    step = span / buckets
    end = (page.now // step + 1) * step  # whole buckets: the same address shows stable slices
    with page.state.db.read() as read:
        util = history.utilisation(read, start=end - span, end=end, buckets=buckets, now=page.now)
    mid = util.step / 2  # each point stands at the middle of its bucket
    series = [Series(page._("Factory"), [(b.at + mid, util.fraction(b)) for b in util.buckets])]
    series += [
        Series(site, [(b.at + mid, util.fraction(b, site)) for b in util.buckets])
        for site in util.capacity
    ]
    chart = line_chart(
        series,
        title=page._("Share of the GPUs held by running jobs, %(window)s (UTC)",
                     window=page._(WINDOW_LABELS[window])),
        fmt_x=_axis(page, pattern),
        fmt_y=page.lang.percent,
        y_max=1.0,
    )
    return page.render(
        "ops_util.html", util=util, chart=chart, window=window, windows=WINDOW_LABELS,
    )


# --- sites: drain, mark unreachable, bring back ----------------------------------------------

SITE_STATES = {
    "up": N_("up"),
    "drained": N_("drained"),
    "unreachable": N_("unreachable"),
}
SITE_DONE = {
    "up": N_("Site %(site)s is back in service."),
    "drained": N_("Site %(site)s is drained: no new job starts there; its runs are moved "
                  "where their data may go."),
    "drained-finish": N_("Site %(site)s is drained: no new job starts there; its runs go on."),
    "unreachable": N_("Site %(site)s is marked unreachable: its runs are requeued and run "
                      "again only where their data may go."),
}


@dataclass
class SiteRow:
    site: m.Site
    nodes: int
    nodes_out: int
    gpus: int
    jobs: list[str]


@router.get("/ops/sites")
def sites(page: PageDep, done: str = "", site: str = "") -> Response:
    page.operator()
    with page.state.db.read() as read:
        rows = {s.id: SiteRow(s, 0, 0, 0, []) for s in tenancy.list_sites(read)}
        by_node: dict[str, SiteRow] = {}
        for n in tenancy.list_nodes(read):
            row = rows.get(n.site_id)
            if row is None:
                continue
            by_node[n.name] = row
            row.nodes += 1
            row.gpus += n.gpu_count
            row.nodes_out += n.state != m.NodeState.UP.value
        for node, jobs in _jobs_on_nodes(read).items():
            if node in by_node:
                by_node[node].jobs.extend(j for j in jobs if j not in by_node[node].jobs)
    notice = page._(SITE_DONE[done], site=site) if done in SITE_DONE and site else None
    return page.render(
        "ops_drain.html", sites=list(rows.values()), states=SITE_STATES, notice=notice,
    )


@router.post("/ops/sites/{name}/state")
def set_site_state(
    name: str,
    page: PageDep,
    state: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    evacuate: Annotated[str, Form(max_length=8)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    caller = page.operator()
    session.check_csrf(page.request, csrf_token)
    if state not in SITE_STATES:
        return page.render(
            "error.html", status=422, title=page._("Not allowed"),
            message=page._("Choose one of: %(choices)s.", choices=", ".join(SITE_STATES)),
        )
    moving = _evacuate(page, evacuate)
    if isinstance(moving, Response):
        return moving
    draining = state == m.SiteState.DRAINED.value
    with page.state.db.write() as write:
        _, change = evacuation.set_site_state(write, caller, name, state, reason.strip(),
                                              evacuate_runs=moving if draining else None,
                                              now=page.now)
    done = "drained-finish" if draining and not change.evacuated else state
    return page.redirect(f"/ops/sites?done={done}&site={name}#site-{name}")
