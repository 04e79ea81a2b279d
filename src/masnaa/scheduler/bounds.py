"""Scan bounds: when a pass may stop scanning, and which sub-queues it may pass over.

Owns the two rules ``core`` asks about as it scans: ``should_stop`` (nothing left
in the queue can start in this pass) and ``passed_over`` (nothing in one
sub-queue can). Their memory (rooms seen, shapes that failed, what preemption may
still free) lives on the ``Pass`` (``context``), which keeps it up to date as the
pass starts and claims.

Both are exact: the scan stops, or passes over a sub-queue, only when no job left
(or none in that sub-queue) can start in this pass.
"""

from __future__ import annotations

from masnaa.domain.reasons import Phrase
from masnaa.scheduler.context import Pass
from masnaa.scheduler.decision import Wait, WaitCode
from masnaa.scheduler.queue import SubQueueKey

LOOK_BEFORE_SKIPPING = 1
"""Blocked jobs in a row, since free capacity last changed, before the scan checks
whether it may stop or skip. The checks are exact, but not free; trying a job costs
more, most of all one that may preempt. With 8, masnaa's pass on Philly's busiest
days tried some 26 jobs per pass only because a claim had just reset the count;
whole Philly at load 0.9 took 130.4 s against 115.4 s with 1 (docs/performance.md).
Skipped jobs get the scan's default wait instead of one of their own."""

NO_ROOM = Wait(WaitCode.NO_CAPACITY, Phrase("wait-no-room"))
MISFIT = Wait(WaitCode.NO_CAPACITY, Phrase("wait-misfit"))


def passed_over(p: Pass, sub: SubQueueKey, head: tuple[float, int]) -> Wait | None:
    """Why the sub-queue ``sub`` (``head``: its first sort key) can be passed over without a
    look, or ``None`` when it must be scanned. It can when none of its jobs can
    start by placement: no node its jobs may use has room for the smallest
    waiting task (``NO_ROOM``), or a gang no larger than theirs, with the same
    eligibility, already failed to fit where they may go (``MISFIT``; where
    only some of its jobs must avoid the reserved nodes, only a failure on every
    node counts); and none of its jobs can make room by preemption (none may, or
    each would find a search of its class failed already: ``_searched``); and the
    job that decides the reservation was already looked at.

    Free GPUs only shrink during a pass, so either answer, once seen, stays true.
    """
    if p.blocked_run < LOOK_BEFORE_SKIPPING:
        return None
    res = p.reservation
    if p.policy.backfill and res is None and p.deferred is None:
        return None
    elig = (sub[3], sub[4])
    seen = p.rooms.get(elig)
    if seen is None or (seen[1] and seen[0] != p.capacity_version):
        gpt = p.min_gpt
        groups = p.eligible_pools_for(*elig)
        room = any(p.view.max_free_node(pool.index) >= gpt for g in groups for pool in g)
        seen = p.rooms[elig] = (p.capacity_version, room)
    # NO_ROOM and a misfit on every node hold for any sub-queue of the same shape:
    # once preemption can free nothing more, the shape is dead for the pass.
    everywhere = True
    if not seen[1]:
        why = NO_ROOM
    elif p.misfit_shape(elig, sub[5], sub[6], 0):
        why = MISFIT
    elif (
        res is not None
        and p.now + p.pending.queue_min_time_limit(sub) > res.start_time
        and p.misfit_shape(elig, sub[5], sub[6], p.reserved_mask)
    ):
        why, everywhere = MISFIT, False
    else:
        return None
    if p.policy.preemptive:
        freed = p.frees.get(sub)
        # A ``may`` holds for the head it was asked of: the jobs behind it waited less.
        if freed is None or (freed[1] and (freed[0] != p.capacity_version or freed[3] != head)):
            groups = p.eligible_pools_for(*elig)
            pools = {pool.index for group in groups for pool in group}
            # Nothing there can be freed for anyone (for good: claims and spent
            # budgets only shrink it), or only for some jobs: it depends on who asks.
            nobody = not _may_free(p, elig, pools)
            may = not nobody and p.policy.may_preempt_any(p.pending.entry_at(head), p)
            freed = p.frees[sub] = (p.capacity_version, may, nobody, head)
        if freed[1] and not _searched(p, sub, head):
            return None
        everywhere = everywhere and freed[2]
    if everywhere:
        p.dead[sub[3:]] = why
    return why


def _searched(p: Pass, sub: SubQueueKey, head: tuple[float, int]) -> bool:
    """Whether every job of the sub-queue ``sub`` (``head``: its first sort key) would
    fail to preempt without a search of its own (``core.preempt``, whose memory of
    failures stays for the pass): for each exclusion its jobs may have, a gang no
    larger, of the same preemption class, already failed its victim search (or no
    attempt is left); and none of the jobs being preempted in its pools is one its
    head may claim, or a claim of that class failed already.

    The class is read at both ends of the sub-queue: it may change only with the
    time waited (a promotion), which is monotone along the sub-queue. The head, which
    waited longest, has every claim right a later job has (as in ``may_preempt_any``).
    On Philly's busy weeks masnaa looked at some fifty to a hundred such jobs per
    pass, one by one, each finding its class's search failed or nothing to claim.
    """
    first = p.pending.entry_at(head)
    cls = p.policy.preemption_class(first, p)
    last = p.pending.entry_at(p.pending.sub_queues()[sub][-1])
    if cls is None or p.policy.preemption_class(last, p) != cls:
        return False
    res, excludes = p.reservation, [0]
    if res is not None:
        # The same test as ``Pass.exclusion``: a job that ends after the reservation
        # starts avoids its nodes; whether every job here does, only the shortest tells.
        excludes = [p.reserved_mask]
        if p.now + p.pending.queue_min_time_limit(sub) <= res.start_time:
            excludes.append(0)
    job = first.job
    elig = (job.gpu_types, job.sites)
    if (
        p.attempts_left > 0
        and p.preemptions_left > 0
        and not all(p.memo_failed((cls, *elig, x), job) for x in excludes)
    ):
        return False
    # A failed search began with the GPUs its job could claim, so this check matters
    # mostly where no attempt is left.
    groups = p.eligible_pools_for(*elig)
    pools = {pool.index for group in groups for pool in group}
    unclaimed = [r for r in p.unclaimed_preempting() if p.pool_of(r) in pools]
    if not unclaimed or all(p.memo_failed(("claims", cls, *elig, x), job) for x in excludes):
        return True
    rights = p.policy.victim_test(first, p)
    return rights is None or not any(rights(r) for r in unclaimed)


def _may_free(p: Pass, key: object, pools: set[int]) -> bool:
    """Whether preemption could still free GPUs in ``pools`` during this pass: GPUs
    of jobs being preempted are unclaimed there, or the budget allows new victims
    and the policy offers at least one candidate there (whoever would benefit)."""
    if any(p.pool_of(r) in pools for r in p.unclaimed_preempting()):
        return True
    if p.attempts_left <= 0 or p.preemptions_left <= 0:
        return False
    found = p.candidates.get(key)
    if found is None:
        found = p.candidates[key] = p.offers_victim(pools)
    return found


def should_stop(p: Pass) -> bool:
    if p.stop_reason is not None:
        return True
    if not p.blocked_count:
        # The first job that cannot start is always looked at: it gets its
        # reservation (or preemption) and an honest estimate.
        return False
    if p.capacity_dirty:
        p.capacity_dirty = False
        p.check_reserved = False
        if p.attempts_left > 0 and p.preemptions_left > 0:
            return False
        if any(r.job.id not in p.claimed for r in p.preempting()):
            return False
        pools = range(len(p.view.pools))
        biggest = max((p.view.max_free_node(i) for i in pools), default=0)
        if biggest == 0 or biggest < p.min_gpt:
            p.stop_reason = Wait(WaitCode.NO_CAPACITY, Phrase("wait-no-task-fits"))
            return True
        p.check_reserved = p.reservation is not None
    if p.check_reserved and p.blocked_run >= LOOK_BEFORE_SKIPPING:
        p.check_reserved = False
        return _only_reserved_room(p)
    return False


def _only_reserved_room(p: Pass) -> bool:
    """With a reservation and no task-sized room outside its nodes, only a job that
    ends before the reservation starts may still start (on them). If no waiting job
    is that short, stop; otherwise let ``order`` skip sub-queues with none."""
    res = p.reservation
    assert res is not None
    pools = range(len(p.view.pools))
    outside = max((p.view.max_free_node(i, p.reserved_mask) for i in pools), default=0)
    if outside >= p.min_gpt:
        return False
    shortest = p.pending.min_time_limit()
    if shortest is None or p.now + shortest > res.start_time:
        p.stop_reason = p.reserved_wait()
        return True
    p.short_until = res.start_time
    return False
