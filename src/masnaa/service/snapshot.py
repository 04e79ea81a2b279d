"""``LiveState``: the scheduler's driver-owned state, built from the store and kept in step.

Owns the three incremental objects of the driver contract
(``docs/architecture.md``) for the live service: ``ClusterState`` (who holds
which GPU), ``PendingQueue`` and ``UsageLedger``, plus the declared tenants,
quotas and priority classes (tenants with their preferred sites), and the
sites' comparison prices the loop refreshes. ``snapshot()`` bundles them for
``decide()``.

Invariants:
- Built once per control-loop process from the store: every job in
  ``admitted`` or ``running`` holds its recorded placement; every ``pending``
  job is queued. The store is the truth; this is an index of it.
- Afterwards only the control loop changes it, and only *after* the store
  says so (a start is allocated here just before its ``admitted`` row is
  committed, and released again if that commit fails) — except the pending
  set, which the API grows (submit) and shrinks (cancel): ``sync_pending``
  diffs it against the store on every pass.
- Fair-share history: jobs that ended within ``HISTORY_HALF_LIVES`` half-lives
  are charged to their tenant at load, decayed to ``now``.
- A job back in the queue after a run (preempted, lost, evacuated) waits from the
  moment it was requeued, not from its submission, as in the twin
  (``sim.engine``): it takes its place behind the jobs that came while it ran, and
  its starvation clock starts again. The twin's figures hold for the service
  only if both feed the scheduler the same queue.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from masnaa import domain
from masnaa.scheduler import ClusterState, PendingQueue, Snapshot, UsageLedger
from masnaa.scheduler.decision import WaitCode
from masnaa.service.site_choice import load_preferences, with_preferences
from masnaa.store import convert
from masnaa.store import models as m

log = logging.getLogger(__name__)

HISTORY_HALF_LIVES = 5.0
ACTIVE = (m.JobState.ADMITTED, m.JobState.RUNNING)


def running_job(row: m.Job, job: domain.Job) -> domain.RunningJob:
    """The core's view of an admitted or running row."""
    start = row.started_at if row.started_at is not None else row.submitted_at
    return domain.RunningJob(
        job=job,
        placement=convert.placement_to_domain(row.placement or []),
        gpu_type=row.gpu_type or job.gpu_types[0],
        start_time=start,
        expected_end=start + job.time_limit,
        attained_service=row.attained_service,
        preempt_deadline=row.preempt_deadline,
        # ``attempt`` counts the runs, this one included.
        requeues=max(0, row.attempt - 1),
    )


class Queued(NamedTuple):
    """A pending job as read from the store, with what earlier runs left it."""

    job: domain.Job
    attained: float
    since: float | None
    """When it was last requeued; ``None``: queued since its submission."""
    requeues: int


class LiveState:
    def __init__(
        self,
        cluster: domain.Cluster,
        *,
        tenants: dict[str, domain.Tenant],
        quotas: tuple[domain.Quota, ...],
        priority_classes: dict[str, domain.PriorityClass],
        half_life: float,
    ) -> None:
        self.cluster = cluster
        self.tenants = tenants
        self.quotas = quotas
        self.priority_classes = priority_classes
        self.state = ClusterState(cluster)
        self.queue = PendingQueue()
        self.usage = UsageLedger(half_life)
        self.node_uuids: dict[str, list[str]] = {}
        self.pending: set[str] = set()
        self.requeues: dict[str, int] = {}
        """Pending jobs that ran before → times they were requeued."""
        self.event_cursor = 0
        self.blocked_sites: set[str] = set()
        """The newest ``job_events`` id already reflected in ``pending``."""
        """Ids in ``queue`` (kept here: iterating the queue is for the core)."""
        self.balances: Mapping[str, Mapping[tuple[str, str], float]] | None = None
        """Project (``tenant/project``) → allocation GPU-seconds left (``service.metering``)."""
        self.unknown: set[str] = set()
        """Active jobs whose placement does not fit the declared cluster (logged, not held)."""
        self.site_prices: Mapping[tuple[str, str], float] | None = None
        """(site, GPU type) → comparison price per GPU-hour (``service.site_choice``)."""
        self.reserved_for: str | None = None
        """The job holding the EASY reservation since the last pass (``Snapshot.reserved_for``).
        After a restart, the pending job whose stored wait says it is reserved for."""

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def load(cls, session: Session, *, now: float, half_life: float) -> LiveState:
        tenants, quotas, classes = _catalog(session)
        live = cls(
            convert.load_cluster(session),
            tenants=tenants,
            quotas=quotas,
            priority_classes=classes,
            half_life=half_life,
        )
        live.node_uuids = {n.name: list(n.gpu_uuids or []) for n in session.scalars(select(m.Node))}
        live.sync_nodes(session)
        live._charge_history(session, now)
        for row, job in convert.load_jobs(session, ACTIVE):
            live.hold(row, job)
        live.sync_pending(session, full=True)
        live.reserved_for = session.scalar(
            select(m.Job.id)
            .where(
                m.Job.state == m.JobState.PENDING.value,
                m.Job.wait_code == WaitCode.RESERVED.value,
            )
            .order_by(m.Job.id)
            .limit(1)
        )
        return live

    def _charge_history(self, session: Session, now: float) -> None:
        half_life = self.usage.half_life
        horizon = now - HISTORY_HALF_LIVES * half_life if math.isfinite(half_life) else None
        stmt = (
            select(
                m.Tenant.name, m.Job.tasks, m.Job.gpus_per_task, m.Job.started_at, m.Job.ended_at
            )
            .join(m.Tenant, m.Job.tenant_id == m.Tenant.id)
            .where(m.Job.ended_at.is_not(None), m.Job.started_at.is_not(None))
        )
        if horizon is not None:
            stmt = stmt.where(m.Job.ended_at >= horizon)
        for tenant, tasks, gpt, started, ended in session.execute(stmt):
            if started is None or ended is None:
                continue
            seconds = max(0.0, ended - started) * tasks * gpt
            weight = 1.0 if not math.isfinite(half_life) else 2 ** (-(now - ended) / half_life)
            if seconds > 0:
                self.usage.charge(tenant, seconds * weight, now)

    # -- keeping in step -----------------------------------------------------------------------
    def hold(self, row: m.Job, job: domain.Job) -> bool:
        """Record that an admitted or running job holds its placement."""
        if job.id in self.state.running:
            return True
        running = running_job(row, job)
        try:
            self.state.allocate(running)
        except (ValueError, KeyError) as exc:
            # The factory changed under a running job (a node removed or shrunk). Its
            # GPUs cannot be indexed; it still runs and is finished like any other.
            if job.id not in self.unknown:
                log.warning("job %s holds GPUs outside the declared cluster: %s", job.id, exc)
            self.unknown.add(job.id)
            return False
        self.usage.start(job.id, job.tenant, job.total_gpus, running.start_time)
        return True

    def release(self, job_id: str, now: float) -> domain.RunningJob | None:
        self.unknown.discard(job_id)
        if job_id not in self.state.running:
            return None
        running = self.state.release(job_id)
        with contextlib.suppress(KeyError):
            self.usage.stop(job_id, now)
        return running

    def enqueue(self, item: Queued) -> None:
        """Queue a pending job, as of when it (re-)entered the queue."""
        job = item.job
        if job.id not in self.pending:
            self.queue.add(job, attained_service=item.attained, since=item.since)
            self.pending.add(job.id)
            if item.requeues:
                self.requeues[job.id] = item.requeues

    def dequeue(self, job_id: str) -> None:
        if job_id in self.pending:
            self.queue.remove(job_id)
            self.pending.discard(job_id)
            self.requeues.pop(job_id, None)

    def starting(
        self, job_id: str, placement: domain.Placement, gpu_type: str, now: float
    ) -> domain.RunningJob:
        """The run a pending job begins now, carrying what it attained in earlier runs."""
        job = self.queue.get(job_id)
        return domain.RunningJob(
            job, placement, gpu_type, now, now + job.time_limit,
            attained_service=self.queue.attained(job_id),
            requeues=self.requeues.get(job_id, 0),
        )

    def sync_pending(self, session: Session, *, full: bool = False) -> tuple[int, int]:
        """Queue new pending jobs, drop those no longer pending; (added, removed).

        Incremental: every change of a job's state writes a ``job_events`` row, so
        the events after ``event_cursor`` say which jobs entered or left ``pending``
        (O(changes), not O(queue)). ``full`` re-reads the whole pending set: the
        safety net for PostgreSQL, where event ids are handed out at insert and a
        transaction may commit after one with a higher id.
        """
        if full or not self.pending:
            cursor = session.scalar(select(func.max(m.JobEvent.id))) or 0
            ids = set(
                session.scalars(select(m.Job.id).where(m.Job.state == m.JobState.PENDING.value))
            )
            self.event_cursor = max(self.event_cursor, cursor)
        else:
            last: dict[str, str] = {}
            for eid, job_id, to_state in session.execute(
                select(m.JobEvent.id, m.JobEvent.job_id, m.JobEvent.to_state)
                .where(m.JobEvent.id > self.event_cursor)
                .order_by(m.JobEvent.id)
            ):
                last[job_id] = to_state
                self.event_cursor = eid
            ids = (self.pending - last.keys()) | {
                j for j, state in last.items() if state == m.JobState.PENDING.value
            }
        gone = self.pending - ids
        for job_id in gone:
            self.dequeue(job_id)
        new = ids - self.pending
        loaded = self.load_pending(session, None if not self.pending and full else new)
        for item in loaded:
            if item.job.id in new:
                self.enqueue(item)
        return len(new), len(gone)

    @staticmethod
    def load_pending(session: Session, ids: Iterable[str] | None) -> list[Queued]:
        """Pending jobs (all, or those among ``ids``), oldest first, each with its
        attained service and, for a job requeued after a run, when it was requeued
        and how many times.

        Reads columns, not ORM rows: at start a queue of 50,000 jobs loads in one query.
        """
        columns = (
            m.Job.id,
            m.Tenant.name,
            m.Project.name,
            m.Job.tasks,
            m.Job.gpus_per_task,
            m.Job.gpu_types,
            m.Job.time_limit,
            m.Job.priority_class,
            m.Job.submitted_at,
            m.Job.sites,
            m.Job.attained_service,
            m.Job.attempt,
        )
        base = (
            select(*columns)
            .join(m.Tenant, m.Job.tenant_id == m.Tenant.id)
            .join(m.Project, m.Job.project_id == m.Project.id)
            .where(m.Job.state == m.JobState.PENDING.value)
        )
        if ids is None:
            batches = [session.execute(base).all()]
        else:
            wanted = sorted(ids)
            batches = [
                session.execute(base.where(m.Job.id.in_(wanted[i : i + 500]))).all()
                for i in range(0, len(wanted), 500)
            ]
        requeued = _requeued_at(session, [r.id for rows in batches for r in rows if r.attempt])
        out = []
        for rows in batches:
            for row in rows:
                (jid, tenant, project, tasks, gpt, types, limit, cls, submitted, sites, att,
                 runs) = row
                job = domain.Job(
                    id=jid,
                    tenant=tenant,
                    # Qualified: project names are unique only within a tenant, and
                    # ``Snapshot.balances`` is keyed by the project (service.metering).
                    project=f"{tenant}/{project}",
                    tasks=tasks,
                    gpus_per_task=gpt,
                    gpu_types=tuple(types),
                    time_limit=limit,
                    priority_class=cls,
                    submit_time=submitted,
                    sites=tuple(sites) if sites is not None else None,
                )
                # A pending row's ``attempt`` counts its runs, each ended by a requeue.
                out.append(Queued(job, att, requeued.get(jid), runs))
        first = submission_order(session, [(q.job.id, q.job.submit_time) for q in out])
        out.sort(key=lambda item: (item.job.submit_time, first.get(item.job.id, 0), item.job.id))
        return out

    def block_site(self, site: str) -> None:
        """A site this process cannot run jobs at (no executor): its nodes take no work."""
        self.blocked_sites.add(site)
        for node in self.cluster.nodes:
            if node.site == site and self.state.is_available(node.name):
                self.state.set_node_available(node.name, False)

    def sync_nodes(self, session: Session) -> None:
        """Drained and down nodes (and nodes of unreachable or blocked sites) take no new work."""
        rows = session.execute(
            select(m.Node.name, m.Node.state, m.Site.state).join(
                m.Site, m.Node.site_id == m.Site.id
            )
        ).all()
        for name, node_state, site_state in rows:
            if name not in self.cluster.by_name:
                continue
            available = (
                node_state == m.NodeState.UP.value
                and site_state == m.SiteState.UP.value
                and self.cluster.by_name[name].site not in self.blocked_sites
            )
            if self.state.is_available(name) != available:
                self.state.set_node_available(name, available)

    def sync_catalog(self, session: Session) -> bool:
        """Tenants (shares, preferred sites), quotas and priority classes as the store has
        them now: an operator's ``PUT /quotas`` or a new tenant takes effect at the next
        pass, without a restart. True if any of them changed."""
        tenants, quotas, classes = _catalog(session)
        if (tenants, quotas, classes) == (self.tenants, self.quotas, self.priority_classes):
            return False
        self.tenants, self.quotas, self.priority_classes = tenants, quotas, classes
        return True

    def snapshot(self) -> Snapshot:
        return Snapshot(
            state=self.state,
            usage=self.usage,
            tenants=self.tenants,
            quotas=self.quotas,
            priority_classes=self.priority_classes,
            balances=self.balances,
            site_prices=self.site_prices,
            reserved_for=self.reserved_for,
        )


def _requeued_at(session: Session, ids: list[str]) -> dict[str, float]:
    """When each of these jobs last entered ``pending`` (its requeue, for a job that ran)."""
    out: dict[str, float] = {}
    for i in range(0, len(ids), 500):
        rows = session.execute(
            select(m.JobEvent.job_id, func.max(m.JobEvent.at))
            .where(
                m.JobEvent.job_id.in_(ids[i : i + 500]),
                m.JobEvent.to_state == m.JobState.PENDING.value,
            )
            .group_by(m.JobEvent.job_id)
        )
        out.update((job_id, at) for job_id, at in rows)
    return out


def _catalog(
    session: Session,
) -> tuple[dict[str, domain.Tenant], tuple[domain.Quota, ...], dict[str, domain.PriorityClass]]:
    """What the scheduler reads of tenancy: tenants with their preferred sites, quotas
    and priority classes."""
    return (
        with_preferences(convert.load_tenants(session), load_preferences(session)),
        convert.load_quotas(session),
        convert.load_priority_classes(session),
    )


def submission_order(session: Session, jobs: Iterable[tuple[str, float]]) -> dict[str, int]:
    """For jobs (id, submission time) that share a submission time with another (a batch
    stamps one time on all its jobs), the id of each one's first event: the order they
    were submitted in, which their random ids do not keep. Other jobs need no query."""
    pairs = list(jobs)
    count: dict[float, int] = {}
    for _, at in pairs:
        count[at] = count.get(at, 0) + 1
    tied = sorted(job_id for job_id, at in pairs if count[at] > 1)
    out: dict[str, int] = {}
    for i in range(0, len(tied), 500):
        for job_id, event in session.execute(
            select(m.JobEvent.job_id, func.min(m.JobEvent.id))
            .where(m.JobEvent.job_id.in_(tied[i : i + 500]))
            .group_by(m.JobEvent.job_id)
        ):
            out[job_id] = event
    return out
