"""``decide()``: one scheduling pass, in named phases.

    order → admit → place → preempt → backfill (reserve) → explain

``order`` merges the heads of the ``PendingQueue``'s sub-queues by the
policy's key and yields jobs lazily, passing over sub-queues whose projects
have all spent their allocation (``admit.spent_sub_queue``); each job then goes
through ``admit`` (rejection of impossible jobs, allocation balance, the pools
where its project has time left), ``place``
(quota per pool, topology-aware best fit, avoiding nodes reserved for the
blocked head unless the job ends before the reservation), ``preempt`` (claim
GPUs of jobs already being preempted, then least-loss victims the policy
allows) and, for the first
job that still cannot start, ``reserve`` (EASY: the earliest time it fits given
running jobs' expected ends, on the nodes it would then use). The scan stops
when nothing further can fit (no free GPU or no node with room for the smallest
task pending, and no preemption budget left; or, once a job holds a
reservation, no room outside the reserved nodes and no waiting job short enough
to end before the reservation starts), at the first blocked job for
head-of-line policies, or after ``backfill_depth`` blocked jobs. Once the jobs
that get estimates were looked at, the scan also skips whole sub-queues that
cannot start anything: when only such short jobs could still start, those that
hold none (``PendingQueue.queue_min_time_limit``); and those whose GPU types and
sites have no room for a task, or whose gang shape is no smaller than one that
already failed to fit, while none of their jobs may preempt anyone or each would
find its class's search failed (``bounds.passed_over``). Skipped jobs are not
counted against ``backfill_depth``, which bounds the jobs actually tried.
``explain`` gives estimated start times to a bounded number of blocked jobs.

Purity: the pass works on a ``View`` (copy-on-write overlay) and never writes
the snapshot, its state, the ledger or the queue. The oracle is stripped for
non-oracle policies before any phase runs.

Start estimates: the earliest time at which the job would fit if running jobs
released their GPUs at their expected ends (``RunningJob.expected_end``,
capped by a preemption deadline; jobs started in this pass end at
``now + time_limit``) and the reserved job took its reservation at its
time. Other waiting jobs are not counted, so an estimate is a lower bound.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterator

from masnaa.domain.job import Job, Placement, RunningJob
from masnaa.domain.reasons import Phrase
from masnaa.scheduler.admit import (
    admit,
    funded_pools,
    reject,
    spent,
    spent_projects,
    spent_sub_queue,
)
from masnaa.scheduler.bounds import passed_over, should_stop
from masnaa.scheduler.config import SchedulerConfig
from masnaa.scheduler.context import Pass, PoolsByType
from masnaa.scheduler.decision import Decision, Reservation, Wait, WaitCode
from masnaa.scheduler.hold import held_first
from masnaa.scheduler.memo import PassMemo
from masnaa.scheduler.pass_view import Key
from masnaa.scheduler.place import best_placement, place_in_pool
from masnaa.scheduler.policies import POLICIES
from masnaa.scheduler.queue import Entry, PendingQueue, SubQueueKey
from masnaa.scheduler.quota_swap import swap_within_quota
from masnaa.scheduler.reclaim_estimate import earlier_by_reclaim
from masnaa.scheduler.release import earliest_fit, reservation_fit
from masnaa.scheduler.review import review
from masnaa.scheduler.snapshot import Snapshot
from masnaa.scheduler.state import Pool
from masnaa.scheduler.view import Held


def decide(
    snapshot: Snapshot,
    pending: PendingQueue,
    now: float,
    config: SchedulerConfig,
    memo: PassMemo | None = None,
) -> Decision:
    """Choose what to start, preempt and reserve now; explain why the rest waits.

    Never mutates ``snapshot`` (nor its state and ledger) or ``pending``.
    Deterministic: the same inputs give the same decision, with or without a
    ``memo`` (a driver's ``PassMemo``, which only saves work). Raises ``ValueError``
    if ``pending`` was built with other service-level thresholds than
    ``config.las_thresholds``.
    """
    policy = POLICIES[config.policy]
    if not policy.oracle and snapshot.oracle is not None:
        snapshot = dataclasses.replace(snapshot, oracle=None)
    if pending.level_thresholds != config.las_thresholds:
        raise ValueError(
            f"the pending queue's level thresholds {pending.level_thresholds!r} differ from "
            f"config.las_thresholds {config.las_thresholds!r}; build the queue with "
            "PendingQueue(level_thresholds=config.las_thresholds)"
        )
    p = Pass(snapshot, pending, now, config, policy, memo)
    reject(p)
    queue = order(p)
    if config.hold_reservation and snapshot.reserved_for is not None:
        queue = held_first(p, queue, snapshot.reserved_for)
    for entry in queue:
        if should_stop(p):
            note_full(p, entry)
            break
        if not consider(p, entry):
            break
    if p.stop_reason is not None:
        for entry in queue:
            if not note_full(p, entry):
                break
    if config.review_times and policy.preemptive:
        review(p)
    explain(p)
    return p.decision


def consider(p: Pass, entry: Entry) -> bool:
    """Run one job through admit → place → preempt → backfill. False: stop the scan."""
    p.looked += 1
    job = entry.job
    if not admit(p, job):
        return True
    pools = funded_pools(p, job)
    if pools is None:
        return True
    if place(p, entry, pools):
        return True
    if p.policy.preemptive and preempt(p, entry, pools):
        return True
    return backfill(p, entry, pools)


# ------------------------------------------------------------------- order
def order(p: Pass) -> Iterator[Entry]:
    """Pending jobs in the policy's order, merging sub-queue heads lazily.

    Two levels: sub-queues that differ only by gang shape form one *group* (same
    tenant, class, service level and eligibility), in which every policy's order is
    arrival order; groups are merged by the policy's key. A group's heap entry
    keeps the key of the head it had when last keyed, a lower bound of its head's
    key now (keys only grow along a group, and within a pass). Sub-queues that
    cannot start anything are passed over before any key is computed: a skip is
    exact whenever it is checked (see ``bounds.passed_over``), so it needs no order,
    and a pass that skips thousands of shape sub-queues keys only the groups.
    """
    policy, pending = p.policy, p.pending
    if not policy.monotone:
        entries = [pending.entry_at(sk) for q in pending.sub_queues().values() for sk in q]
        entries.sort(key=lambda e: policy.job_key(e, p))
        yield from entries
        return
    keys = list(pending.sub_queues())
    queues = list(pending.sub_queues().values())
    if policy.arrival_keys:
        yield from _arrival_order(p, keys, queues)
        return
    by_group: dict[tuple[object, ...], list[tuple[tuple[float, int], int, int]]] = {}
    for qi, q in enumerate(queues):
        by_group.setdefault(keys[qi][:5], []).append((q[0], qi, 0))
    inner = list(by_group.values())
    heap: list[tuple[Key, int]] = []
    for gi, members in enumerate(inner):
        heapq.heapify(members)
        heap.append((policy.job_key(pending.entry_at(members[0][0]), p), gi))
    heapq.heapify(heap)
    stale = [False] * len(inner)
    rekey = policy.dynamic_keys
    funded = p.snapshot.balances is None
    while heap:
        key, gi = heap[0]
        members = inner[gi]
        sk, qi, pos = members[0]
        if not funded and spent_sub_queue(p, keys[qi]):
            if all(spent_sub_queue(p, keys[m[1]]) for m in members):
                heapq.heappop(heap)  # the whole group: no project of it may start a job
                continue
            heapq.heappop(members)
            stale[gi] = True
            continue
        if _passes_over(p, keys[qi], sk):
            heapq.heappop(members)
            if members:
                stale[gi] = True
            else:
                heapq.heappop(heap)
            continue
        entry = pending.entry_at(sk)
        if stale[gi] or rekey:
            fresh = policy.job_key(entry, p)
            stale[gi] = False
            if fresh > key:
                heapq.heapreplace(heap, (fresh, gi))
                continue
        yield entry
        q = queues[qi]
        if pos + 1 < len(q):
            heapq.heapreplace(members, (q[pos + 1], qi, pos + 1))
        else:
            heapq.heappop(members)
        if members:
            stale[gi] = True
        else:
            heapq.heappop(heap)


def _arrival_order(
    p: Pass, keys: list[SubQueueKey], queues: list[list[tuple[float, int]]]
) -> Iterator[Entry]:
    """``order`` for policies whose key is the arrival key: one heap of sub-queue heads
    (no groups, no keys to compute, so none to keep fresh)."""
    pending = p.pending
    heap = [(q[0], qi, 0) for qi, q in enumerate(queues)]
    heapq.heapify(heap)
    funded = p.snapshot.balances is None
    while heap:
        sk, qi, pos = heap[0]
        if (not funded and spent_sub_queue(p, keys[qi])) or _passes_over(p, keys[qi], sk):
            heapq.heappop(heap)
            continue
        yield pending.entry_at(sk)
        q = queues[qi]
        if pos + 1 < len(q):
            heapq.heapreplace(heap, (q[pos + 1], qi, pos + 1))
        else:
            heapq.heappop(heap)


def _passes_over(p: Pass, sub: SubQueueKey, head: tuple[float, int]) -> bool:
    """Whether ``order`` passes over the rest of a sub-queue (``head``: its first sort
    key). Jobs that cannot start are passed over a sub-queue at a time once the ones
    that get a start estimate have been looked at, sharing the pass's default wait.
    """
    if len(p.to_estimate) < p.config.estimate_depth:
        return False
    why = _skip_reason(p, sub, head)
    if why is None:
        return False
    p.skip(why)
    return True


def _skip_reason(p: Pass, sub: SubQueueKey, head: tuple[float, int]) -> Wait | None:
    """Why no job of the sub-queue ``sub`` (``head``: its first sort key) can start for
    the rest of the pass, if so."""
    dead = p.dead.get(sub[3:])
    if dead is not None:
        return dead  # a sub-queue of the same shape was found unable to start
    until = p.short_until
    # The same test as ``Pass.exclusion``: rounding must not part the two.
    if until is not None and p.now + p.pending.queue_min_time_limit(sub) > until:
        return p.reserved_wait()  # none of its jobs ends before the reservation
    return passed_over(p, sub, head)  # no room for its tasks, or its shape already failed


# ------------------------------------------------------------------- place
def place(p: Pass, entry: Entry, pools: PoolsByType) -> bool:
    """Start the job now if it fits (honouring quotas and the reservation)."""
    job = entry.job
    exclude = p.exclusion(job)
    if p.known_misfit(job, exclude) and (not p.quota_pools or p.quota_open(job, pools)):
        return False
    found, quota_blocked = _best_allowed(p, job, pools, exclude)
    if found is not None and p.deferred is not None:
        # It fits if nothing is reserved: now the reservation matters.
        settle(p)
        exclude = p.exclusion(job)
        if exclude:
            found, quota_blocked = _best_allowed(p, job, pools, exclude)
    if found is not None:
        p.start(entry, found[0], found[1], backfilled=p.reservation is not None)
        return True
    if quota_blocked == sum(len(g) for g in pools):
        p.wait(job, WaitCode.QUOTA, p.quota_wait(job, pools))
        p.quota_waits.add(job.id)
    elif not quota_blocked and pools is p.eligible_pools(job):
        # Only a failure on every pool of its eligibility holds for another job of the
        # same shape: one of another project may have time in more of them.
        p.note_misfit(job, exclude)
    return False


def _best_allowed(
    p: Pass, job: Job, pools: PoolsByType, exclude: int
) -> tuple[tuple[Placement, Pool] | None, int]:
    """The job's best placement in the first type group with room, and how many pools
    its quota kept it from."""
    quota_blocked = 0
    for group in pools:
        allowed = [pool for pool in group if p.quota_allows(job, pool)]
        quota_blocked += len(group) - len(allowed)
        if not allowed:
            continue
        why = p.decision.site_choices if p.config.explain_waits else None
        found = best_placement(p.view, allowed, job, exclude, p.sites, why)
        if found is not None:
            return found, quota_blocked
    return None, quota_blocked


# ----------------------------------------------------------------- preempt
def preempt(p: Pass, entry: Entry, pools: PoolsByType) -> bool:
    """Make room by claiming GPUs of jobs already being preempted, then by new victims.

    A job claims only GPUs of jobs it could have preempted itself: GPUs freed for
    one job's reclaim, taken by another job ahead of it in the pass, sent the first
    one after a new victim at every pass (on Philly at load 0.7, thousands of
    reclaims in a day). Victims are walked in the policy's order (least loss first)
    among those it allows for this job, until the job fits; then only victims whose
    GPUs the placement actually uses are kept. Failures are remembered per shape
    (and preemption class) for the rest of the pass (claimable GPUs and victims only
    get scarcer).
    """
    job = entry.job
    if job.id in p.quota_waits:  # no room under its quota: only its own jobs can make some
        return swap_within_quota(p, entry, pools)
    claimable = p.unclaimed_preempting()
    can_try = p.attempts_left > 0 and p.preemptions_left > 0
    if not claimable and not can_try:
        return False
    memo = p.policy.preemption_class(entry, p)
    exclude = p.exclusion(job)
    # As for misfits (``place``): failures on fewer pools than its eligibility's are
    # not kept for other jobs, though the failures they kept hold for this one.
    keep = pools is p.eligible_pools(job)
    claims_key = None if memo is None else ("claims", memo, job.gpu_types, job.sites, exclude)
    # A gang no larger of the same class already failed to claim in this pass.
    claims_failed = claims_key is not None and p.memo_failed(claims_key, job)
    if claimable and not (claims_failed and not can_try):
        rights = p.policy.victim_test(entry, p)
        claimable = [] if rights is None else [r for r in claimable if rights(r)]
    if not claimable and not can_try:
        return False
    try_claims = bool(claimable) and not claims_failed
    memo = memo if can_try else None
    victims_key = None if memo is None else (memo, job.gpu_types, job.sites, exclude)
    try_victims = can_try and not (victims_key is not None and p.memo_failed(victims_key, job))
    if not try_claims and not try_victims:
        return False
    flat = [pool for group in pools for pool in group if p.quota_allows(job, pool, reclaim=True)]
    if not flat:
        return False
    pool_ids = {pool.index for pool in flat}
    view = p.view
    mark = view.mark()
    chosen: list[RunningJob] = []
    for r in claimable:
        if r.job.id not in p.claimed and p.pool_of(r) in pool_ids:
            view.give(view.held(r.job.id))
            chosen.append(r)
    found = best_placement(view, flat, job, exclude) if chosen else None
    if found is None and chosen and claims_key is not None and keep:
        p.memo_fail(claims_key, job)
    if (
        found is None
        and try_victims
        and p.policy.may_preempt_any(entry, p)
        and p.offers_victim(pool_ids)
    ):
        # A job that may stop no one, or whose pools hold no job anyone may stop, spends
        # no attempt: unestimated, its sub-queue is passed over (``bounds.passed_over``),
        # so a pass that estimates it must not spend one either, or estimates would
        # change what a later job may preempt.
        p.attempts_left -= 1
        if p.attempts_left <= 0:
            p.capacity_changed()
        budget = min(p.config.max_victims_per_job, p.preemptions_left)
        # A search that failed on this very state fails again: skip it (memo.py).
        memo, search = p.memo, _search_key(p, entry, pool_ids, exclude, budget)
        if memo is None or search is None or not memo.search_failed(p.state, p.now, search):
            found = _walk_victims(p, entry, pool_ids, exclude, budget, chosen)
            if found is None and memo is not None and search is not None:
                memo.keep_failure(p.state, p.now, search)
        if found is None and victims_key is not None and keep:
            p.memo_fail(victims_key, job)
    if found is None:
        view.rollback(mark)
        return False
    pool = found[1]
    used = _by_node(view.masks_of(found[0]))
    needed = [r for r in chosen if _overlaps(view.held(r.job.id), used)]
    view.rollback(mark)
    for r in needed:
        view.give(view.held(r.job.id))
    again = place_in_pool(view, pool, job, exclude)
    if again is None:  # the smaller set led to a layout that fails: keep every victim
        view.rollback(mark)
        needed = chosen
        for r in needed:
            view.give(view.held(r.job.id))
        again = place_in_pool(view, pool, job, exclude)
        assert again is not None, "a placement that fit must fit again on the same GPUs"
    placement = again[0]
    held = view.masks_of(placement)
    view.take(held)
    # GPUs of victims the beneficiary does not use stay busy until their grace ends.
    for r in needed:
        view.take(view.held(r.job.id))
    p.claim(entry, needed, placement, pool)
    return True


def _walk_victims(
    p: Pass, entry: Entry, pool_ids: set[int], exclude: int, budget: int, chosen: list[RunningJob]
) -> tuple[Placement, Pool] | None:
    """Give back victims' GPUs in rank order until ``entry`` fits (``None``: it never did).

    The view keeps what was given, and ``chosen`` the victims; the caller rolls back.
    """
    view, job, total = p.view, entry.job, entry.job.total_gpus
    for new, r in enumerate(p.victims_for(entry, pool_ids), start=1):
        view.give(view.held(r.job.id))
        chosen.append(r)
        pool = p.state._pools[p.pool_of(r)]
        # Too few free GPUs in the pool: no placement to look for yet.
        if view.free[pool.index] >= total:
            hit = place_in_pool(view, pool, job, exclude)
            if hit is not None:
                return hit[0], pool
        if new >= budget:
            return None
    return None


def _search_key(
    p: Pass, entry: Entry, pool_ids: set[int], exclude: int, budget: int
) -> tuple[object, ...] | None:
    """What a victim search reads, for the driver's memo (``None``: do not remember).

    Only while the pass has started and claimed nothing is its view the state's
    own. The GPUs of jobs in grace given back first follow from the state and the
    same rights (``victim_key``), so they need no place in the key.
    """
    if p.memo is None or p.started or p.claimed:
        return None
    rights = p.policy.victim_key(entry, p)
    if rights is None:
        return None
    job = entry.job
    return (rights, job.tasks, job.gpus_per_task, tuple(sorted(pool_ids)), exclude, budget)


def _by_node(held: Held) -> dict[int, int]:
    out: dict[int, int] = {}
    for i, m in held:
        out[i] = out.get(i, 0) | m
    return out


def _overlaps(held: Held, used: dict[int, int]) -> bool:
    return any(used.get(i, 0) & m for i, m in held)


# ---------------------------------------------------------------- backfill
FIRST_IN_LINE = Phrase("wait-first-in-line")


def backfill(p: Pass, entry: Entry, pools: PoolsByType) -> bool:
    """The job is blocked: reserve for the first one (EASY), record a wait, decide to go on."""
    job = entry.job
    p.blocked_run += 1
    if job.id in p.quota_waits:
        return True
    p.blocked_count += 1
    if p.policy.backfill and p.reservation is None and p.deferred is None:
        if _may_defer(p, pools):
            p.deferred = (job, pools)
            p.wait(
                job,
                WaitCode.RESERVED,
                FIRST_IN_LINE,
            )
            return not p.policy.head_of_line
        if reserve(p, job, pools):
            return not p.policy.head_of_line
    if not p.config.explain_waits:
        # Only the reason differs from the path below, never what the scan does next.
        return not p.policy.head_of_line and p.blocked_count <= p.config.backfill_depth
    code, why = p.capacity_reason(job, pools)
    held_for = p.reservation
    if (
        code is WaitCode.NO_CAPACITY
        and held_for is not None
        and p.exclusion(job)
        and not p.known_misfit(job, 0)
        and any(best_placement(p.view, list(group), job) is not None for group in pools)
    ):
        code = WaitCode.BACKFILL_WOULD_DELAY
        why = Phrase("wait-would-delay", {"start_at": round(held_for.start_time)})
    p.wait(job, code, why)
    if code in (WaitCode.NO_CAPACITY, WaitCode.BACKFILL_WOULD_DELAY):
        p.to_estimate.append((job, pools))
    if p.policy.head_of_line:
        # Nothing passes a blocked head: its estimate is the first time it fits.
        if p.config.estimate_depth > 0:
            est = earliest_fit(p, [(job, pools)], take_reservation=False).get(job.id)
            if est is not None:
                p.wait(job, code, why, estimated_start=est[0])
        p.to_estimate.clear()
        return False
    return p.blocked_count <= p.config.backfill_depth


def reserve(p: Pass, job: Job, pools: PoolsByType) -> bool:
    """Give ``job`` the pass's EASY reservation: the earliest time and nodes it fits."""
    found = reservation_fit(p, job, pools)
    if found is None:
        return False
    t, placement = found
    nodes = placement.nodes
    res = Reservation(job.id, t, nodes)
    p.reservation = res
    p.reserved_mask = p.node_mask(nodes)
    p.reserved_placement = placement
    p.decision.reservations.append(res)
    p.capacity_changed()  # the reserved nodes are now out of bounds for most jobs
    p.wait(
        job,
        WaitCode.RESERVED,
        Phrase("wait-reserved", {"nodes": len(nodes)}),
        estimated_start=t,
    )
    return True


def _may_defer(p: Pass, pools: PoolsByType) -> bool:
    """Whether the first blocked job's reservation may wait until a later job could
    start (``Pass.deferred``), and be skipped if none can.

    Only in passes that explain nothing (the twin's) and never preempt: then nothing
    changes the view between the blocked job's turn and the first later start, so
    the walk done then is the walk that would have been done at its turn. And only
    where every node of its pools is available: then the walk surely finds a time
    (a job that passed ``reject`` fits on them all free), so no later blocked job
    would have taken the reservation instead. On 100,000 synthetic jobs under
    fifo-backfill half the passes with a reservation started nothing after it.
    """
    cfg = p.config
    if cfg.explain_waits or cfg.estimate_depth or p.policy.preemptive:
        return False
    cap = p.state._pool_avail_cap
    return all(cap[pool.index] == pool.capacity for group in pools for pool in group)


def settle(p: Pass) -> None:
    """Work out a deferred reservation: a later job is about to start."""
    deferred = p.deferred
    if deferred is not None:
        p.deferred = None
        found = reserve(p, *deferred)
        assert found, "every node of its pools is available: the walk finds a time"


# ----------------------------------------------------------------- explain
def note_full(p: Pass, entry: Entry) -> bool:
    """Explain a job the scan did not try because nothing more fits (bounded count)."""
    if len(p.to_estimate) >= p.config.estimate_depth:
        return False
    job = entry.job
    if (
        job.id not in p.decision.rejected
        and p.policy.head_of_line is False
        and spent(p, job.project) is None
    ):
        pools = funded_pools(p, job)
        if pools is None:
            return True
        code, why = p.capacity_reason(job, pools)
        stop = p.stop_reason
        if (
            code is WaitCode.NO_CAPACITY
            and stop is not None
            and stop.code is WaitCode.BACKFILL_WOULD_DELAY
            and p.exclusion(job)
        ):
            code, why = stop.code, stop.why  # only the reserved nodes have room
        p.wait(job, code, why)
        p.to_estimate.append((job, pools))
    return True


def explain(p: Pass) -> None:
    """Estimated starts for the first ``estimate_depth`` blocked jobs; the default wait."""
    targets = p.to_estimate[: p.config.estimate_depth]
    if targets:
        found = earliest_fit(p, targets, take_reservation=True)
        for job_id, (t, _) in found.items():
            w = p.decision.waiting[job_id]
            p.decision.waiting[job_id] = Wait(w.code, w.why, estimated_start=t)
    if p.config.explain_waits:
        earlier_by_reclaim(p, targets)
    p.decision.spent = spent_projects(p)
    if p.stop_reason is not None:
        p.decision.default_wait = p.stop_reason
    elif p.skipped is not None:
        p.decision.default_wait = p.skipped
