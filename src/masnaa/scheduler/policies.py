"""The policies, registered by name in ``POLICIES``.

A policy is a small object that says, for one pass, how to **order** pending
jobs (``job_key``, smaller first) and whom a waiting job may **preempt**
(``victim_order``: candidates, cheapest first; ``victim_test``: which of them
this job may stop), plus flags for the shape of the pass (backfill with an
EASY reservation, head-of-line blocking, preemption). The pass itself
(``masnaa.scheduler.core``) is shared. Policies see domain types and the
read-only ``PassView`` only.

Order keys must be monotone inside a sub-queue of the ``PendingQueue`` (one
tenant, one priority class, one service level, by time in queue) so the pass
can merge sub-queue heads; a policy whose order is not (the oracle's) sets
``monotone = False`` and the pass sorts the whole queue, which costs
O(pending · log pending) and is acceptable for a lower-bound reference only.

Starvation: under ``las`` a job that has waited ``starvation_limit`` seconds is
promoted ahead of every non-starving job of its priority class, in arrival order;
it can then preempt any running job but one stopped before that cannot checkpoint
(``Las.victim_test``). ``masnaa`` promotes a
job that has waited ``tenant_starvation_limit`` ahead of its own tenant's jobs only,
so that fair share keeps ordering the tenants (``promote_ahead_of_tenants`` restores
the global promotion).
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    Container,
    Hashable,
    Iterator,
    Mapping,
    Sequence,
)
from types import MappingProxyType

from masnaa.domain.job import RunningJob
from masnaa.scheduler.pass_view import Key, PassView, VictimTest
from masnaa.scheduler.queue import Entry


class Policy:
    """Base policy: FIFO order, never preempts.

    Preemption hooks: ``victim_order`` yields running jobs (not being
    preempted), cheapest victim first, without knowing who benefits;
    ``victim_test`` says which of them one waiting job may stop. A pass
    walks victims in that order and stops as soon as the waiting job fits, or
    after ``victim_scan_limit`` candidates, so ``victim_order`` must be lazy: it
    walks the state's per (tenant, class) groups or its allocation order, never
    sorts every running job (except the oracle's).
    """

    name: str = ""
    oracle: bool = False
    description: str = ""
    preemptive: bool = False
    backfill: bool = False
    head_of_line: bool = False
    monotone: bool = True
    uses_quotas: bool = False
    dynamic_keys: bool = False
    """Keys may grow during a pass (fair share): the merge re-checks a head before use."""
    arrival_keys: bool = False
    """``job_key`` is the arrival key ``(since, seq)`` itself: the merge needs no groups."""

    def job_key(self, entry: Entry, v: PassView) -> Key:
        return (entry.since, entry.seq)

    def victim_order(
        self, v: PassView, tenants: Container[str] | None = None
    ) -> Iterator[RunningJob]:
        """Candidates, cheapest first; ``tenants``: only their jobs (``None``: all). A
        policy may ignore ``tenants``: the pass still tests every candidate."""
        return iter(())

    def victim_tenants(self, entry: Entry, v: PassView) -> Container[str] | None:
        """The only tenants whose jobs ``entry`` may preempt (``None``: any), so that
        the pass need not walk, nor count against ``victim_scan_limit``, the others."""
        return None

    def victim_test(self, entry: Entry, v: PassView) -> VictimTest | None:
        """Whom ``entry`` may preempt, as a test on candidates (``None``: nobody).

        The pass applies it to every candidate of ``victim_order``, so a policy
        works out the waiting job's side once here rather than per candidate.
        """
        return None

    def victim_key(self, entry: Entry, v: PassView) -> Hashable | None:
        """A key such that, at one state version and any ``now``, jobs with equal keys
        are offered the same candidates in the same order by ``victim_order`` (given
        ``victim_tenants``) and may preempt exactly the same of them (``None``: no
        such key, e.g. the test reads attained service, which grows with the clock).

        Lets a driver's ``PassMemo`` skip a preemption search that already failed.
        """
        return None

    def may_preempt_any(self, head: Entry, v: PassView) -> bool:
        """Whether some job of ``head``'s sub-queue (same tenant, class, level and
        eligibility, none waiting longer than ``head``) might preempt anyone in this
        pass. ``False`` lets the pass skip the whole sub-queue when it has no room, so
        it must be exact in that direction; ``True`` is always safe."""
        return self.preemptive

    def wait_limits(self, tenant: str, v: PassView) -> tuple[float, ...]:
        """Waits in the queue after which a job of ``tenant`` is treated otherwise (a
        right to reclaim, a promotion). ``review.review`` finds, in every sub-queue, the
        next job to reach each (``SchedulerConfig.review_times``)."""
        return ()

    def review(self, heads: Callable[[], Sequence[Entry]], v: PassView) -> None:
        """Note (``PassView.revisit``) when a running job next becomes a victim it is
        not now for a waiting job (``SchedulerConfig.review_times``).

        ``heads()``: the first job of every sub-queue not started in this pass, at its
        end (one per tenant, class, level and shape), worked out when asked. Called for
        preemptive policies only: for the others nothing waits on the clock.
        """

    def preemption_class(self, entry: Entry, v: PassView) -> Hashable | None:
        """Jobs of one class may preempt exactly the same victims (``None``: no such class).

        Lets a pass skip a job whose class already failed to find room for a gang at
        most as large.
        """
        return None


class Fifo(Policy):
    name = "fifo"
    description = "First come, first served; the first job that cannot start blocks all behind it."
    head_of_line = True
    arrival_keys = True


class FifoBackfill(Policy):
    name = "fifo-backfill"
    description = (
        "FIFO with EASY backfill: the first blocked job gets a reservation; later jobs start "
        "only if they do not delay it (judged by time limits only)."
    )
    backfill = True
    arrival_keys = True


def _my_level(entry: Entry, v: PassView) -> int:
    return -1 if v.starving(entry) else v.level(entry.attained)


def _spared_by_promoted(r: RunningJob) -> bool:
    """Whether las's promoted jobs spare ``r``: stopped before, it cannot checkpoint."""
    return bool(r.requeues) and not r.checkpoint_every


def _review_victims(v: PassView, level: int | None, *, spare_requeued: bool = False) -> None:
    """Note when a running job not yet a candidate becomes one: its run reaching
    ``min_run_before_preemption`` and, for a waiting job of service ``level`` (``None``:
    levels do not matter; ``-1``: promoted, any level will do), its attained service
    reaching the level above. ``spare_requeued``: a job stopped before that cannot
    checkpoint never becomes one (las's promoted jobs). One look at every running job,
    in the twin only."""
    min_run, now = v.config.min_run_before_preemption, v.now
    thresholds = v.config.las_thresholds
    if level is not None and level >= len(thresholds):
        return  # at the top level: nobody will ever be above it
    bound = thresholds[level] if level is not None and level >= 0 else None
    for r in v.running_oldest_first():
        if r.preempt_deadline is not None:
            continue
        at = r.start_time + min_run
        if spare_requeued and _spared_by_promoted(r):
            continue  # never, in this run
        if bound is not None:
            short = bound - v.running_attained(r)
            if short > 0:
                at = max(at, now + short / r.job.total_gpus)
        if at > now:
            v.revisit(at)
    if v.starts_now():
        v.revisit(now + min_run)  # at the earliest, for this pass's own starts


def _lowest(
    heads: Sequence[Entry], level: Callable[[Entry, PassView], int], v: PassView
) -> int | None:
    """The lowest service level among ``heads`` (``None``: no head)."""
    lowest: int | None = None
    for head in heads:
        mine = level(head, v)
        if lowest is None or mine < lowest:
            lowest = mine
    return lowest


def _masnaa_level(entry: Entry, v: PassView) -> int:
    """masnaa's service level of a waiting job; ``-1`` when it is promoted."""
    if v.starving_in_tenant(entry):
        return -1
    if v.config.promote_ahead_of_tenants and v.starving(entry):
        return -1
    return v.level(entry.attained)


class Las(Policy):
    name = "las"
    description = (
        "Tiresias-style discretised 2D least-attained-service: GPU×seconds attained, "
        "a few service levels, FIFO within a level, preemptive, starving jobs promoted."
    )
    preemptive = True

    def job_key(self, entry: Entry, v: PassView) -> Key:
        return (float(_my_level(entry, v)), entry.since, entry.seq)

    def victim_order(
        self, v: PassView, tenants: Container[str] | None = None
    ) -> Iterator[RunningJob]:
        # Longest running first: it has attained the most service in this run.
        min_run, now = v.config.min_run_before_preemption, v.now
        for r in v.running_oldest_first():
            if now - r.start_time < min_run:
                return  # allocation order: every later job started even more recently
            if r.preempt_deadline is None:
                yield r

    def victim_test(self, entry: Entry, v: PassView) -> VictimTest | None:
        # A victim is above this job's level once its attained service reaches the
        # threshold that ends this level: one comparison per candidate, no bisect.
        # The sum is ``PassView.running_attained``, inlined: it is las's hottest line.
        mine = _my_level(entry, v)
        thresholds = v.config.las_thresholds
        if mine >= len(thresholds):
            return None  # already at the top level: nobody is above it
        now = v.now
        if mine < 0:
            # A promoted job may stop anyone but a job that cannot checkpoint and was
            # stopped before: jobs that outlast the starvation limit would otherwise
            # take turns stopping each other for ever, each losing its whole run (a
            # replay with --checkpoint-interval 0 never ended). Sparing every job that
            # has not checkpointed in its run would also end such turns, but on Philly
            # it changed what las does where jobs checkpoint (mean JCT 20.2 h → 27.0 h
            # at load 0.9): the rule stays to where the turns cannot end otherwise.
            def promoted(victim: RunningJob) -> bool:
                return not _spared_by_promoted(victim)

            return promoted
        bound = thresholds[mine]

        def test(victim: RunningJob) -> bool:
            run = now - victim.start_time
            if run < 0.0:
                run = 0.0
            return victim.attained_service + victim.job.total_gpus * run >= bound

        return test

    def preemption_class(self, entry: Entry, v: PassView) -> Hashable | None:
        return _my_level(entry, v)

    def wait_limits(self, tenant: str, v: PassView) -> tuple[float, ...]:
        limit = v.config.starvation_limit
        return (limit,) if limit > 0 else ()

    def review(self, heads: Callable[[], Sequence[Entry]], v: PassView) -> None:
        # A waiting job of the lowest level may stop a job once it is old enough and
        # above that level; a starving one (level -1), once it is old enough, unless it
        # was stopped before and cannot checkpoint.
        lowest = _lowest(heads(), _my_level, v)
        if lowest is not None:
            _review_victims(v, lowest, spare_requeued=lowest < 0)


class SrtfOracle(Policy):
    name = "srtf-oracle"
    oracle = True
    description = (
        "ORACLE lower-bound reference: shortest remaining GPU-time first using TRUE runtimes, "
        "preemptive. Not a real policy: no scheduler knows runtimes."
    )
    preemptive = True
    monotone = False

    def job_key(self, entry: Entry, v: PassView) -> Key:
        return (v.remaining(entry.job.id) * entry.job.total_gpus, entry.since, entry.seq)

    def victim_order(
        self, v: PassView, tenants: Container[str] | None = None
    ) -> Iterator[RunningJob]:
        # Most remaining GPU-time first (a full sort: an oracle has no speed target).
        min_run, now = v.config.min_run_before_preemption, v.now
        keyed = [
            (-v.remaining(r.job.id) * r.job.total_gpus, r.job.id, r)
            for r in v.running_oldest_first()
            if r.preempt_deadline is None and now - r.start_time >= min_run
        ]
        keyed.sort(key=lambda k: (k[0], k[1]))
        return iter([k[2] for k in keyed])

    def victim_test(self, entry: Entry, v: PassView) -> VictimTest | None:
        mine = v.remaining(entry.job.id) * entry.job.total_gpus
        return lambda victim: v.remaining(victim.job.id) * victim.job.total_gpus > mine

    def review(self, heads: Callable[[], Sequence[Entry]], v: PassView) -> None:
        if heads():
            _review_victims(v, None)  # remaining work only falls: the age is the clock


class Masnaa(Policy):
    name = "masnaa"
    description = (
        "Default: priority classes, then quotas with borrowing and reclaim, fair share by "
        "decayed usage ÷ share, least attained service within a tenant with starvation "
        "protection; topology-aware gang placement, least-loss preemption with grace, "
        "EASY backfill."
    )
    preemptive = True
    backfill = True
    uses_quotas = True
    dynamic_keys = True

    def job_key(self, entry: Entry, v: PassView) -> Key:
        job = entry.job
        prio = -float(v.priority(job))
        if v.config.promote_ahead_of_tenants and v.starving(entry):
            return (prio, 0.0, 0.0, 0.0, entry.since, entry.seq)
        level = float(_masnaa_level(entry, v))
        return (prio, 1.0, v.tenant_ratio(job.tenant), level, entry.since, entry.seq)

    def victim_order(
        self, v: PassView, tenants: Container[str] | None = None
    ) -> Iterator[RunningJob]:
        # Lowest priority value first; within one value the tenants most over their
        # share first (DESIGN: lowest priority, most over share, least loss), and within
        # a tenant the longest-running jobs first: they hold the most attained service,
        # and with checkpoints a victim loses at most one checkpoint interval of work.
        # Tested on Philly, longest-running first beat newest-first on both mean JCT and
        # p99 queueing delay: a job preempted soon after starting re-queues with little
        # service and takes GPUs straight back. Jobs already preempted once come after
        # the tenant's others: oldest first across all tenants made one 1,286-hour job
        # the first victim of every reclaim aimed at its tenant; preempted 9 times and
        # sent behind a weeks-deep backlog each time, it set the makespan of whole
        # Philly (utilisation 70.6 %, against 79.1 % with both rules).
        by_group = v.running_groups()
        for tenant, pclass in self._groups(v, tenants):
            again: list[RunningJob] = []
            for job_id in by_group[(tenant, pclass)]:
                r = v.running_job(job_id)
                if r.preempt_deadline is not None:
                    continue
                if r.attained_service > 0:
                    again.append(r)  # preempted before: last, so one job is not hit again
                else:
                    yield r
            yield from again

    @staticmethod
    def _groups(v: PassView, tenants: Container[str] | None) -> Sequence[tuple[str, str]]:
        """Running (tenant, class) groups in victim order."""
        groups = v.victim_groups()  # replaced, never changed, when the pass moves on
        if tenants is None:
            return groups
        return [group for group in groups if group[0] in tenants]

    def victim_test(self, entry: Entry, v: PassView) -> VictimTest | None:
        job = entry.job
        mine, can = v.priority(job), v.can_preempt(job)
        reclaim = v.reclaim_test(entry)
        fair = v.config.fair_share_preemption
        own = v.config.short_first_in_tenant
        if not can and reclaim is None and not fair and not own:
            return None  # no lower class it may stop, no quota to take back, no swap
        class_of = v.class_of
        spare = v.config.spare_after_requeues

        def test(victim: RunningJob) -> bool:
            theirs = class_of(victim.job.priority_class)[0]
            if theirs < mine:
                return can
            if theirs > mine:
                return False
            if spare and victim.requeues >= spare:
                return False  # stopped often enough by its equals: let it finish
            if reclaim is not None and reclaim(victim):
                return True
            if own and self._own_swap(entry, victim, v):
                return True
            return fair and self._fair_swap(entry, victim, v)

        return test

    def victim_key(self, entry: Entry, v: PassView) -> Hashable | None:
        cfg = v.config
        if cfg.fair_share_preemption or cfg.short_first_in_tenant:
            return None  # swaps read run time, attained service and lost work
        # Otherwise the test reads the two classes and the reclaimable excess only; the
        # order of the walk moves with fair-share usage, so the key holds it too.
        borrowed = v.reclaim_from(entry)
        excess = None if borrowed is None else frozenset(borrowed.items())
        order = tuple(self._groups(v, self.victim_tenants(entry, v)))
        return (v.priority(entry.job), v.can_preempt(entry.job), excess, order)

    def victim_tenants(self, entry: Entry, v: PassView) -> Container[str] | None:
        if v.config.fair_share_preemption:
            return None
        # Without fair-share swaps, victims are jobs of a lower class (if this job may
        # preempt at all) or of tenants beyond their nominal quota (a reclaim).
        borrowed = v.reclaim_from(entry)
        tenants = set() if borrowed is None else {tenant for tenant, _ in borrowed}
        if v.config.short_first_in_tenant:
            tenants.add(entry.job.tenant)
        if v.can_preempt(entry.job):
            mine = v.priority(entry.job)
            for tenant, pclass in v.running_groups():
                value, preemptible, _ = v.class_of(pclass)
                if value < mine and preemptible:
                    tenants.add(tenant)
        return tenants

    def may_preempt_any(self, head: Entry, v: PassView) -> bool:
        # Within one sub-queue only the size differs from job to job and the head has
        # waited longest: priority preemption and fair-share swaps are class- and
        # config-wide, and a reclaim is likeliest for the smallest gang (one GPU).
        if v.config.fair_share_preemption or v.reclaim_from(head, gpus=1) is not None:
            return True
        if v.config.short_first_in_tenant and any(
            tenant == head.job.tenant for tenant, _ in v.running_groups()
        ):
            return True
        if not v.can_preempt(head.job):
            return False
        floor = v.preemptible_floor()
        return floor is not None and floor < v.priority(head.job)

    def _fair_swap(self, entry: Entry, victim: RunningJob, v: PassView) -> bool:
        """Fair-share preemption between jobs of one priority class."""
        job = entry.job
        if v.run_time(victim) < v.config.min_run_before_preemption:
            return False
        if v.level(v.running_attained(victim)) <= _masnaa_level(entry, v):
            return False
        if victim.job.tenant == job.tenant:
            return True  # least attained service first inside one tenant's share
        # Only if the victim's tenant stays more served than ours after the swap:
        # the swap cannot be undone by the same rule in the next pass (no thrashing).
        theirs_after = v.tenant_ratio(victim.job.tenant, -victim.job.total_gpus)
        return theirs_after > v.tenant_ratio(job.tenant, job.total_gpus)

    def _own_swap(self, entry: Entry, victim: RunningJob, v: PassView) -> bool:
        """Least attained service first inside one tenant (``short_first_in_tenant``)."""
        if victim.job.tenant != entry.job.tenant:
            return False
        cfg = v.config
        if v.run_time(victim) < cfg.min_run_before_preemption:
            return False
        level = v.level(v.running_attained(victim))
        if level < cfg.victim_min_level or level <= _masnaa_level(entry, v):
            return False
        return v.lost_work(victim) <= cfg.victim_max_loss * victim.job.total_gpus

    def preemption_class(self, entry: Entry, v: PassView) -> Hashable | None:
        return (v.priority(entry.job), entry.job.tenant, _masnaa_level(entry, v))

    def wait_limits(self, tenant: str, v: PassView) -> tuple[float, ...]:
        cfg = v.config
        limits = []
        if cfg.tenant_starvation_limit > 0:
            limits.append(cfg.tenant_starvation_limit)
        if cfg.promote_ahead_of_tenants and cfg.starvation_limit > 0:
            limits.append(cfg.starvation_limit)
        if v.lends(tenant):
            limits.append(cfg.reclaim_after)
        return tuple(limits)

    def review(self, heads: Callable[[], Sequence[Entry]], v: PassView) -> None:
        cfg = v.config
        # Reclaims and priority preemption do not read a victim's age or service; swaps
        # do. (Work since the last checkpoint, which ``short_first_in_tenant`` reads,
        # rises and falls with the run's rhythm: the next pass reads it again.)
        if not (cfg.fair_share_preemption or cfg.short_first_in_tenant):
            return
        lowest = _lowest(heads(), _masnaa_level, v)
        if lowest is not None:
            if cfg.short_first_in_tenant:
                lowest = max(lowest, cfg.victim_min_level - 1)
            _review_victims(v, lowest)


POLICIES: Mapping[str, Policy] = MappingProxyType(
    {p.name: p for p in (Fifo(), FifoBackfill(), Las(), SrtfOracle(), Masnaa())}
)
"""Every policy by name. ``SchedulerConfig(policy=...)`` selects one."""
