"""``Pass``: the working state of one scheduling pass (``decide`` in ``core``).

Owns what a pass learns and tentatively changes while it scans the queue: the
``View`` overlay of free GPUs, the decision being built, per-tenant GPU deltas,
the EASY reservation and its nodes, memos of gangs that failed to fit or to find
victims, and the scan's stop and skip state. It implements ``PassView`` for the
policies; the quota reads (quotas per pool, per-pool GPU deltas, reclaims) come
from its base, ``quota_view.QuotaView``. Nothing here writes the snapshot,
its state, the ledger or the pending queue.

The rules that read the stop and skip state, and may stop the scan or pass over
a sub-queue, are in ``bounds``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Mapping, Reversible
from dataclasses import dataclass

from masnaa.domain.job import Job, Placement, RunningJob
from masnaa.domain.reasons import Phrase
from masnaa.domain.tenancy import PriorityClass
from masnaa.scheduler.config import SchedulerConfig
from masnaa.scheduler.decision import Decision, Preemption, Reservation, Start, Wait, WaitCode
from masnaa.scheduler.memo import PassMemo
from masnaa.scheduler.place import SiteChoice
from masnaa.scheduler.policies import Policy
from masnaa.scheduler.queue import Entry, PendingQueue, SubQueueKey
from masnaa.scheduler.quota_view import QuotaView
from masnaa.scheduler.snapshot import Snapshot
from masnaa.scheduler.state import Pool, effective_end
from masnaa.scheduler.view import Held, View

PoolsByType = tuple[tuple[Pool, ...], ...]
"""Eligible pools of a job, grouped by acceptable GPU type in preference order."""



# ------------------------------------------------------------ pass context
@dataclass(slots=True)
class _Started:
    end: float
    job_id: str
    held: Held


class Pass(QuotaView):
    """The working state of one pass; implements ``PassView`` for policies."""

    def __init__(
        self,
        snapshot: Snapshot,
        pending: PendingQueue,
        now: float,
        config: SchedulerConfig,
        policy: Policy,
        memo: PassMemo | None = None,
    ) -> None:
        super().__init__(snapshot, now, config, policy.uses_quotas)
        self.snapshot = snapshot
        self.memo = memo
        self.pending = pending
        self.policy = policy
        self.view = View(snapshot.state)
        self.decision = Decision()
        self.classes: Mapping[str, PriorityClass] = snapshot.priority_classes
        self.committed: dict[str, dict[tuple[str, str], float]] = {}
        """Project → pool (site, GPU type) → GPUs × time limit of its jobs this pass
        started or claimed there."""
        self.spent: dict[str, Wait | None] = {}
        """Projects whose balance ``admit`` checked since their last commit: the reason
        their jobs wait if the allocation is spent, else None."""
        self.funded: dict[
            str, dict[tuple[tuple[str, ...], tuple[str, ...] | None], PoolsByType | Wait]
        ] = {}
        """Project → eligibility → the pools where it has time left, or why it waits
        (``admit.funded_pools``), until the pass next commits to the project."""
        self.tenant_delta: dict[str, int] = {}
        self.usage_cache: dict[str, float] = {}
        self._ratios: dict[str, float] = {}
        """``tenant_ratio`` with no extra GPUs, until the tenant next starts or claims."""
        self._by_share: list[tuple[str, str]] | None = None
        """``victim_groups``, until the pass next starts or claims."""
        self._floor: tuple[int | None] | None = None
        """``preemptible_floor``, once asked (running jobs are the state's: fixed)."""
        self.started: list[_Started] = []
        self.claimed: set[str] = set()
        self.reservation: Reservation | None = None
        self.deferred: tuple[Job, PoolsByType] | None = None
        """The first blocked job, while its reservation waits for a later start
        (``core.settle``): until then no node is reserved."""
        self.reserved_mask = 0
        self.reserved_placement: Placement | None = None
        self.to_estimate: list[tuple[Job, PoolsByType]] = []
        self.quota_waits: set[str] = set()
        self.blocked_count = 0
        self.looked = 0
        self.attempts_left = config.preemption_attempts_per_pass if policy.preemptive else 0
        self.preemptions_left = config.max_preemptions_per_pass if policy.preemptive else 0
        self.stop_reason: Wait | None = None
        self.capacity_version = 0
        self.blocked_run = 0
        """Jobs found blocked since free capacity last changed."""
        self.check_reserved = False
        self.rooms: dict[tuple[tuple[str, ...], tuple[str, ...] | None], tuple[int, bool]] = {}
        self.candidates: dict[object, bool] = {}
        self.frees: dict[SubQueueKey, tuple[int, bool, bool, tuple[float, int]]] = {}
        self.dead: dict[tuple[object, ...], Wait] = {}
        """Shapes ``(GPU types, sites, tasks, GPUs per task)`` no job of which can start
        for the rest of the pass, whatever its sub-queue (see ``bounds.passed_over``)."""
        self.short_until: float | None = None
        """Set once only jobs that end by then may still start (see ``bounds.should_stop``)."""
        self._reserved_wait: Wait | None = None
        self.skipped: Wait | None = None
        """Why the first sub-queue the scan passed over waits (``order``)."""
        self.review_at = math.inf
        """The earliest ``revisit`` time noted so far (``Decision.review_at``)."""
        self.sites = SiteChoice(snapshot.site_prices, snapshot.tenants)
        self._pools_cache: dict[tuple[tuple[str, ...], tuple[str, ...] | None], PoolsByType] = {}
        self._preempting: list[RunningJob] | None = None
        self._unclaimed: tuple[int, list[RunningJob]] | None = None
        self.capacity_dirty = True
        self._misfits: dict[
            tuple[tuple[str, ...], tuple[str, ...] | None, int], list[tuple[int, int]]
        ] = {}
        self.min_gpt = pending.min_gpus_per_task() or 0
        self._gpt_left = dict(pending.tasks_by_size())
        """Jobs per task size not yet started in this pass: the smallest task still waiting."""
        self.preempt_misfits: dict[tuple[object, ...], list[tuple[int, int]]] = {}

    # ---- PassView
    def priority(self, job: Job) -> int:
        pc = self.classes.get(job.priority_class)
        return 0 if pc is None else pc.value

    def class_of(self, name: str) -> tuple[int, bool, bool]:
        pc = self.classes.get(name)
        return (0, True, False) if pc is None else (pc.value, pc.preemptible, pc.can_preempt)

    def running_groups(self) -> Mapping[tuple[str, str], Reversible[str]]:
        return self.state._groups

    def preemptible_floor(self) -> int | None:
        if self._floor is None:
            values = [
                value
                for value, preemptible, _ in map(self.class_of, {c for _, c in self.state._groups})
                if preemptible
            ]
            self._floor = (min(values, default=None),)
        return self._floor[0]

    def victim_groups(self) -> list[tuple[str, str]]:
        if self._by_share is None:
            keyed = []
            for tenant, pclass in self.state._groups:
                value, preemptible, _ = self.class_of(pclass)
                if preemptible:
                    keyed.append((value, -self.tenant_ratio(tenant), tenant, pclass))
            keyed.sort()
            self._by_share = [(tenant, pclass) for _, _, tenant, pclass in keyed]
        return self._by_share

    def running_oldest_first(self) -> Iterable[RunningJob]:
        return self.state._running.values()

    def running_job(self, job_id: str) -> RunningJob:
        return self.state._running[job_id]

    def preemptible(self, job: Job) -> bool:
        pc = self.classes.get(job.priority_class)
        return True if pc is None else pc.preemptible

    def can_preempt(self, job: Job) -> bool:
        pc = self.classes.get(job.priority_class)
        return False if pc is None else pc.can_preempt

    def tenant_ratio(self, tenant: str, extra_gpus: int = 0) -> float:
        if not extra_gpus:
            known = self._ratios.get(tenant)
            if known is not None:
                return known  # every masnaa key reads it: once per tenant until it starts
        usage = self.usage_cache.get(tenant)
        if usage is None:
            usage = self.usage_cache[tenant] = self.snapshot.usage.usage(tenant, self.now)
        held = self.state.tenant_gpus(tenant) + self.tenant_delta.get(tenant, 0) + extra_gpus
        t = self.snapshot.tenants.get(tenant)
        share = 1.0 if t is None else t.share
        value = usage + held * self.config.fair_share_horizon
        ratio = math.inf if share <= 0 else value / share
        if not extra_gpus:
            self._ratios[tenant] = ratio
        return ratio

    def level(self, attained: float) -> int:
        return bisect.bisect_right(self.config.las_thresholds, attained)

    def starving(self, entry: Entry) -> bool:
        limit = self.config.starvation_limit
        return limit > 0 and self.now - entry.since >= limit

    def starving_in_tenant(self, entry: Entry) -> bool:
        limit = self.config.tenant_starvation_limit
        return limit > 0 and self.now - entry.since >= limit

    def starts_now(self) -> bool:
        return bool(self.decision.starts)

    def revisit(self, at: float) -> None:
        if self.now < at < self.review_at:
            self.review_at = at

    def running_attained(self, victim: RunningJob) -> float:
        run = max(0.0, self.now - victim.start_time)
        # The state holds whole gangs only, so the job's size is its placement's.
        return victim.attained_service + victim.job.total_gpus * run

    def lost_work(self, victim: RunningJob) -> float:
        since = victim.start_time
        if victim.last_checkpoint is not None and victim.last_checkpoint > since:
            since = victim.last_checkpoint
        ran = max(0.0, self.now - since)
        every = victim.checkpoint_every
        if every:
            ran %= every  # checkpoints since the last one known, at the run's rhythm
        return victim.job.total_gpus * ran

    def run_time(self, victim: RunningJob) -> float:
        return self.now - victim.start_time

    def remaining(self, job_id: str) -> float:
        oracle = self.snapshot.oracle
        if oracle is None:
            raise RuntimeError(
                f"policy {self.policy.name!r} asked for a true runtime, which only oracle "
                "policies receive; the driver must pass Snapshot.oracle"
            )
        return oracle[job_id]

    # ---- pools and quotas
    def eligible_pools(self, job: Job) -> PoolsByType:
        return self.eligible_pools_for(job.gpu_types, job.sites)

    def eligible_pools_for(
        self, gpu_types: tuple[str, ...], sites: tuple[str, ...] | None
    ) -> PoolsByType:
        key = (gpu_types, sites)
        cached = self._pools_cache.get(key)
        if cached is None:
            groups = []
            for t in gpu_types:
                group = tuple(
                    pool
                    for pool in self.state._pools_by_type.get(t, ())
                    if sites is None or pool.site in sites
                )
                if group:
                    groups.append(group)
            cached = self._pools_cache[key] = tuple(groups)
        return cached

    def offers_victim(self, pools: set[int]) -> bool:
        """Whether the policy offers any unclaimed victim in ``pools``, whoever asks."""
        claimed, pool_of = self.claimed, self.pool_of
        return any(
            r.job.id not in claimed and pool_of(r) in pools for r in self.policy.victim_order(self)
        )

    # ---- applying choices to the overlay
    def start(self, entry: Entry, placement: Placement, pool: Pool, *, backfilled: bool) -> None:
        job = entry.job
        self.decision.starts.append(
            Start(
                job_id=job.id,
                placement=placement,
                gpu_type=pool.gpu_type,
                site=pool.site,
                backfilled=backfilled,
                borrowed_gpus=self.borrowed(job, pool),
            )
        )
        held = self.view.masks_of(placement)
        self.view.take(held)
        self._count(job.tenant, pool.index, job.total_gpus)
        self._commit(job, pool)
        self.started.append(_Started(self.now + job.time_limit, job.id, held))
        self.capacity_changed()
        self._served(job)

    def _commit(self, job: Job, pool: Pool) -> None:
        """Charge the job's time-limit worth to its project's pool for the rest of the pass."""
        if self.snapshot.balances is None:
            return  # nothing reads it (the twin's passes)
        mine = self.committed.setdefault(job.project, {})
        key = (pool.site, pool.gpu_type)
        mine[key] = mine.get(key, 0.0) + job.total_gpus * job.time_limit
        self.spent.pop(job.project, None)  # ``admit`` finds it out again
        self.funded.pop(job.project, None)

    def _served(self, job: Job) -> None:
        """``job`` leaves the waiting jobs of this pass (started, or waits on a claim)."""
        g = job.gpus_per_task
        left = self._gpt_left[g] = self._gpt_left.get(g, 1) - 1
        if left <= 0 and g == self.min_gpt:
            self.min_gpt = min((k for k, n in self._gpt_left.items() if n > 0), default=0)

    def claim(
        self, entry: Entry, victims: list[RunningJob], placement: Placement, pool: Pool
    ) -> None:
        job = entry.job
        now = self.now
        ready = now
        reasons = {r.job.id: self._victim_reason(entry, r) for r in victims}
        for r in victims:
            self.claimed.add(r.job.id)
            self._count(r.job.tenant, self.pool_of(r), -r.placement.gpu_count)
            # An overdue estimate says nothing: then the GPUs come back at the deadline.
            end = r.expected_end if r.expected_end > now else math.inf
            if r.preempt_deadline is not None:
                ready = max(ready, min(r.preempt_deadline, end))
                continue
            pc = self.classes.get(r.job.priority_class)
            grace = self.config.default_grace if pc is None else pc.grace_seconds
            ready = max(ready, min(now + grace, end))
            self.decision.preemptions.append(
                Preemption(
                    job_id=r.job.id,
                    grace_seconds=grace,
                    reason=(reasons[r.job.id],),
                    beneficiary=job.id,
                )
            )
            self.preemptions_left -= 1
        self._count(job.tenant, pool.index, job.total_gpus)
        self._commit(job, pool)
        self.wait(
            job,
            WaitCode.WAITING_FOR_PREEMPTION,
            Phrase("wait-preempting", {"jobs": len(victims)}),
            estimated_start=ready,
        )
        self.capacity_changed()
        self._served(job)

    def _victim_reason(self, entry: Entry, r: RunningJob) -> Phrase:
        job = entry.job
        if self.priority(r.job) < self.priority(job):
            return Phrase("victim-priority", {"job": job.id, "class": job.priority_class,
                                              "victim_class": r.job.priority_class})
        if self.reclaims(entry, r):
            return Phrase("victim-reclaim", {"tenant": job.tenant, "victim_tenant": r.job.tenant,
                                             "job": job.id})
        if self.policy.oracle:
            return Phrase("victim-oracle", {"job": job.id})
        if r.job.tenant == job.tenant:
            return Phrase("victim-same-tenant", {"job": job.id, "victim": r.job.id})
        if self.policy.name == "las":
            return Phrase("victim-less-service", {"job": job.id, "victim": r.job.id})
        return Phrase("victim-fair-share", {"job": job.id, "victim": r.job.id,
                                            "tenant": job.tenant})

    def known_misfit(self, job: Job, exclude: int) -> bool:
        """Whether a job at least as large (same eligibility) already failed to fit.

        Free capacity never grows during a pass, so a gang of ``k × g`` that did not
        fit means no gang of ``k' ≥ k`` tasks of ``g' ≥ g`` GPUs fits either.
        """
        return self.misfit_shape((job.gpu_types, job.sites), job.tasks, job.gpus_per_task, exclude)

    def misfit_shape(
        self, elig: tuple[tuple[str, ...], tuple[str, ...] | None], k: int, g: int, exclude: int
    ) -> bool:
        failed = self._misfits.get((elig[0], elig[1], exclude))
        if failed:
            for fk, fg in failed:  # a loop, not any(): the scan calls this per sub-queue
                if k >= fk and g >= fg:
                    return True
        return False

    def quota_open(self, job: Job, pools: PoolsByType) -> bool:
        """Whether quotas let ``job`` try at least one of its pools."""
        return any(self.quota_allows(job, pool) for group in pools for pool in group)

    def note_misfit(self, job: Job, exclude: int) -> None:
        # Called only when quotas allowed every pool, so the failure is physical and
        # holds for the same or a larger shape of any tenant.
        key = (job.gpu_types, job.sites, exclude)
        failed = self._misfits.setdefault(key, [])
        k, g = job.tasks, job.gpus_per_task
        failed[:] = [(fk, fg) for fk, fg in failed if not (fk >= k and fg >= g)]
        failed.append((k, g))

    def unclaimed_preempting(self) -> list[RunningJob]:
        """Jobs already being preempted whose GPUs no waiting job claimed in this pass
        (one list, shared until the next claim: callers must not change it)."""
        claimed = self.claimed
        # Claims only grow during a pass: the list changes only when one is added.
        if self._unclaimed is None or self._unclaimed[0] != len(claimed):
            unclaimed = [r for r in self.preempting() if r.job.id not in claimed]
            self._unclaimed = (len(claimed), unclaimed)
        return self._unclaimed[1]

    def memo_failed(self, key: tuple[object, ...], job: Job) -> bool:
        """Whether a gang no larger than ``job`` already failed under ``key`` in this pass."""
        failed = self.preempt_misfits.get(key)
        if not failed:
            return False
        k, g = job.tasks, job.gpus_per_task
        return any(k >= fk and g >= fg for fk, fg in failed)

    def memo_fail(self, key: tuple[object, ...], job: Job) -> None:
        self.preempt_misfits.setdefault(key, []).append((job.tasks, job.gpus_per_task))

    def capacity_changed(self) -> None:
        self.capacity_dirty = True
        self.capacity_version += 1
        self.blocked_run = 0

    def exclusion(self, job: Job) -> int:
        """Nodes ``job`` must avoid: those reserved, unless it ends before the reservation."""
        res = self.reservation
        if res is not None and self.now + job.time_limit > res.start_time:
            return self.reserved_mask
        return 0

    def _count(self, tenant: str, pool: int, gpus: int) -> None:
        self._held_in_pool(tenant, pool, gpus)
        self._by_share = None
        self._ratios.pop(tenant, None)
        self.tenant_delta[tenant] = self.tenant_delta.get(tenant, 0) + gpus

    def wait(
        self, job: Job, code: WaitCode, why: Phrase, estimated_start: float | None = None
    ) -> None:
        self.decision.waiting[job.id] = Wait(code, why, estimated_start)

    def node_mask(self, nodes: tuple[str, ...]) -> int:
        m = 0
        for n in nodes:
            m |= 1 << self.state._ord[n]
        return m

    # ---- victims
    def preempting(self) -> list[RunningJob]:
        if self._preempting is None:
            running = self.state._running
            self._preempting = sorted(
                (running[job_id] for job_id in self.state._preempting),
                key=lambda r: (effective_end(r), r.job.id),
            )
        return self._preempting

    def victims_for(self, entry: Entry, pool_ids: set[int]) -> Iterator[RunningJob]:
        """Victims the policy allows for this job, in rank order (at most a scan limit)."""
        test = self.policy.victim_test(entry, self)
        if test is None:
            return
        claimed, limit = self.claimed, self.config.victim_scan_limit
        held, node_pool = self.state._held, self.state._node_pool
        scanned = 0
        for r in self.policy.victim_order(self, self.policy.victim_tenants(entry, self)):
            if r.job.id in claimed or node_pool[held[r.job.id][0][0]] not in pool_ids:
                continue
            scanned += 1
            if scanned > limit:
                return
            if test(r):
                yield r

    # ---- stopping and reasons (the rules: ``bounds``)
    def skip(self, why: Wait) -> None:
        if self.skipped is None:
            self.skipped = why

    def reserved_wait(self) -> Wait:
        # One per pass (a pass makes one reservation): every sub-queue passed over for
        # it shares the same reason.
        res = self.reservation
        assert res is not None
        if self._reserved_wait is None:
            self._reserved_wait = Wait(
                WaitCode.BACKFILL_WOULD_DELAY,
                Phrase("wait-held-for", {"job": res.job_id, "start_at": round(res.start_time)}),
            )
        return self._reserved_wait

    def capacity_reason(self, job: Job, pools: PoolsByType) -> tuple[WaitCode, Phrase]:
        avail = max(self.state._pool_avail_cap[pool.index] for group in pools for pool in group)
        if avail < job.total_gpus:
            return (
                WaitCode.NODES_UNAVAILABLE,
                Phrase("wait-nodes-unavailable", {"gpus": job.total_gpus, "usable": avail}),
            )
        free = sum(self.view.free[pool.index] for group in pools for pool in group)
        types = "/".join(job.gpu_types)
        if free < job.total_gpus:  # too few free at all: where they are does not matter
            return WaitCode.NO_CAPACITY, Phrase(
                "wait-busy", {"gpus": job.total_gpus, "types": types, "free": free}
            )
        return (
            WaitCode.NO_CAPACITY,
            Phrase("wait-not-together", {"tasks": job.tasks, "gpt": job.gpus_per_task,
                                         "types": types, "free": free}),
        )
