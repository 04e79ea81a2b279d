"""``swap_within_quota``: a job its tenant's quota holds back stops the tenant's own
jobs of lower classes.

Priority preemption (``preempt``) only looks for room a job may then use under its
tenant's quota. When the tenant already holds its whole quota (nominal plus
borrowing limit) in a pool, no victim of another tenant can help, and an urgent
job of a class that may preempt would wait behind the tenant's own backlog for
ever. Its own jobs of lower, preemptible classes are the room: stopping enough of
them brings the tenant back under its quota, and the job takes their place. Other
tenants lose nothing, and the tenant holds no more than before.

GPUs of the tenant's own lower-class jobs already in their grace period count
first (a swap begun in an earlier pass is not begun again with new victims); new
victims follow in the policy's victim order, within the pass's preemption budget
and ``victim_scan_limit``.
"""

from __future__ import annotations

from masnaa.domain.job import Placement, RunningJob
from masnaa.scheduler.context import Pass, PoolsByType
from masnaa.scheduler.place import place_in_pool
from masnaa.scheduler.queue import Entry
from masnaa.scheduler.state import Pool


def swap_within_quota(p: Pass, entry: Entry, pools: PoolsByType) -> bool:
    """Claim the tenant's own lower-class jobs so that ``entry`` starts within its quota
    (``False``: its class may not preempt, or no pool holds enough of them)."""
    job = entry.job
    if not p.can_preempt(job) or p.attempts_left <= 0:
        return False
    floor = p.preemptible_floor()
    mine = p.priority(job)
    if floor is None or floor >= mine:
        return False  # no running job of a lower class may be stopped
    for group in pools:
        for pool in group:
            if _swap_in_pool(p, entry, pool, mine):
                return True
    return False


def _swap_in_pool(p: Pass, entry: Entry, pool: Pool, mine: int) -> bool:
    job = entry.job
    q = p.quotas.get((job.tenant, pool.index))
    if q is None or q.borrowing_limit is None:
        return False  # not held back by a ceiling of its own here
    excess = p.used(job.tenant, pool.index) + job.total_gpus - (q.nominal + q.borrowing_limit)
    if excess <= 0:
        return False
    p.attempts_left -= 1
    view, exclude = p.view, p.exclusion(job)
    mark = view.mark()
    chosen: list[RunningJob] = []
    freed = 0
    for r in _own_lower(p, entry, pool, mine):
        view.give(view.held(r.job.id))
        chosen.append(r)
        freed += r.job.total_gpus
        if freed < excess or view.free[pool.index] < job.total_gpus:
            continue
        found = place_in_pool(view, pool, job, exclude)
        if found is not None:
            _claim(p, entry, chosen, found[0], pool)
            return True
    view.rollback(mark)
    return False


def _own_lower(p: Pass, entry: Entry, pool: Pool, mine: int) -> list[RunningJob]:
    """The tenant's jobs in ``pool`` of classes below ``mine`` that may be stopped:
    those already in grace and unclaimed first, then new victims in victim order."""
    tenant = entry.job.tenant

    def mine_to_stop(r: RunningJob) -> bool:
        value, preemptible, _ = p.class_of(r.job.priority_class)
        return (
            r.job.tenant == tenant
            and preemptible
            and value < mine
            and r.job.id not in p.claimed
            and p.pool_of(r) == pool.index
        )

    out = [r for r in p.unclaimed_preempting() if mine_to_stop(r)]
    budget = min(p.config.max_victims_per_job, p.preemptions_left)
    scanned = 0
    for r in p.policy.victim_order(p, {tenant}):
        if r.preempt_deadline is not None or not mine_to_stop(r):
            continue
        if scanned >= budget or scanned >= p.config.victim_scan_limit:
            break
        scanned += 1
        out.append(r)
    return out


def _claim(p: Pass, entry: Entry, chosen: list[RunningJob], placement: Placement,
           pool: Pool) -> None:
    """As ``preempt`` ends: every chosen job is needed (for the quota, if not for room),
    and the GPUs the beneficiary does not use stay busy until their grace ends."""
    view = p.view
    view.take(view.masks_of(placement))
    for r in chosen:
        view.take(view.held(r.job.id))
    p.claim(entry, chosen, placement, pool)
