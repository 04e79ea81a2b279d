"""Release walks: when blocked jobs would first fit as running jobs end.

``earliest_fit`` serves the EASY reservation of the first blocked job and the
start estimates of the next ones (``core``). It walks the release profile (the
expected ends of running jobs, jobs started in this pass, and the reserved
job's own start and end) on the pass's ``View``, undoing every change before
it returns. Estimates are lower bounds: other waiting jobs are not counted.
A job whose tasks each fill a whole node of its one pool (most big gangs) is
walked a shorter way that gives the same answer (``_whole_nodes_fit``).
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterable, Iterator, Mapping

from masnaa.domain.job import Job, Placement
from masnaa.scheduler.context import Pass, PoolsByType
from masnaa.scheduler.memo import Fit
from masnaa.scheduler.place import place_in_pool
from masnaa.scheduler.state import Pool
from masnaa.scheduler.view import Held


def reservation_fit(p: Pass, job: Job, pools: PoolsByType) -> Fit:
    """When and where the first blocked job fits (its EASY reservation), from the
    pass's ``PassMemo`` when the same walk was already done on the same state."""
    memo = p.memo
    # A job narrowed to the pools its project has time in (``admit.funded_pools``)
    # does not share the walk of its shape.
    if memo is None or p.started or p.claimed or pools is not p.eligible_pools(job):
        return _reserve(p, job, pools)
    shape = (job.gpu_types, job.sites, job.tasks, job.gpus_per_task)
    known, fit = memo.recall(p.state, p.now, shape)
    if not known:
        fit = _reserve(p, job, pools)
        memo.keep(p.state, shape, fit)
    return fit


def _reserve(p: Pass, job: Job, pools: PoolsByType) -> Fit:
    # GPUs of jobs being preempted were freed for someone: a reservation on them
    # would bar their beneficiary, which then chose new victims elsewhere.
    return earliest_fit(p, [(job, pools)], take_reservation=False, spare_preempted=True).get(
        job.id
    )


def earliest_fit(
    p: Pass,
    targets: list[tuple[Job, PoolsByType]],
    *,
    take_reservation: bool,
    spare_preempted: bool = False,
    whole_nodes: bool = True,
) -> dict[str, tuple[float, Placement]]:
    """When each target would first fit as running jobs end (see the module docstring).

    One walk over the release profile serves all targets; targets of the same
    shape share one answer. After a release only the nodes it touched gained
    GPUs, so a target is re-placed only when a touched node of one of its pools
    now has room for one of its tasks and the pool has enough free GPUs.
    ``take_reservation``: the reserved job takes its GPUs at its start time and
    gives them back after its time limit. ``spare_preempted``: GPUs of jobs being
    preempted never come back in the walk (they are left to whoever they were
    freed for). ``whole_nodes=False`` always walks the general way (tests compare
    the two; see ``_whole_nodes_fit``).
    """
    if whole_nodes and not take_reservation and len(targets) == 1:
        job, pools = targets[0]
        flat = [pool for group in pools for pool in group]
        if len(flat) == 1 and _of_whole_nodes(flat[0], job):
            when = _whole_nodes_fit(p, job, flat[0], _release_events(p, spare_preempted))
            return {} if when is None else {job.id: when}
    view = p.view
    saved = view.save()
    groups: dict[tuple[object, ...], tuple[Job, list[Pool], list[str]]] = {}
    for job, pools in targets:
        # Pools too, not only the eligibility: jobs of one shape may be narrowed to
        # different pools (``admit.funded_pools``).
        flat = [pool for g in pools for pool in g]
        key = (job.gpu_types, job.sites, job.tasks, job.gpus_per_task,
               tuple([pool.index for pool in flat]))
        if key in groups:
            groups[key][2].append(job.id)
        else:
            groups[key] = (job, flat, [job.id])
    todo = list(groups.values())
    found: dict[str, tuple[float, Placement]] = {}
    events: list[tuple[float, int, Held]] = []
    res = p.reservation if take_reservation else None
    placed_res = p.reserved_placement
    if res is not None and placed_res is not None:
        held_res = view.masks_of(placed_res)
        res_job = p.pending.get(res.job_id)
        # Taken just after the releases at its start time, released after its limit.
        events = [
            (res.start_time, 1, held_res),
            (res.start_time + res_job.time_limit, 2, held_res),
        ]
    releases = _release_events(p, spare_preempted)
    stream: Iterator[tuple[float, int, Held]] = (
        heapq.merge(_as_releases(releases), events, key=lambda e: e[:2])
        if events
        else _as_releases(releases)
    )
    pending_take = bool(events)
    for t, kind, held in stream:
        if kind == 1:
            view.take(held)
            pending_take = False
            # Releases at the reservation's own start were not checked yet: check all.
            touched: Held | None = None
        else:
            view.give_back(held)
            if pending_take and res is not None and t >= res.start_time:
                continue
            touched = held
        left = []
        for group in todo:
            hit = _fits(p, group[0], group[1], touched)
            if hit is None:
                left.append(group)
            else:
                for job_id in group[2]:
                    found[job_id] = (t, hit)
        todo = left
        if not todo:
            break
    view.restore(saved)
    return found


def _of_whole_nodes(pool: Pool, job: Job) -> bool:
    """Whether each task of ``job`` takes a whole node of ``pool``, every node of which
    has exactly ``gpus_per_task`` GPUs."""
    g = job.gpus_per_task
    return pool.max_node_gpus == g and pool.capacity == g * len(pool.members)


def _whole_nodes_fit(
    p: Pass, job: Job, pool: Pool, releases: Iterator[tuple[float, Held]]
) -> tuple[float, Placement] | None:
    """``earliest_fit`` for one job whose tasks each fill a whole node of its one pool.

    Such a job's placement reads only which available nodes of the pool are wholly
    free (``place_in_pool`` reads no bucket below ``gpus_per_task``), so the walk
    follows just the nodes of that pool, counts those a release leaves wholly free,
    and places the job, on their mask, after the release that brings the count to
    its tasks, as the general walk would place it after that same release. It leaves
    the view as it found it, with nothing to save or give back. On 10,000 GPUs the
    reservations of 64- to 1,024-GPU gangs walk fifty-odd releases each; walked this
    way, a million synthetic jobs replay 7 % faster under masnaa and 10 % under
    fifo-backfill, to the same report (docs/performance.md).
    """
    view = p.view
    index, g, tasks = pool.index, job.gpus_per_task, job.tasks
    pool_of, avail = view.pool_of, p.state._avail
    full = (1 << g) - 1
    bucket = view.buckets[index]
    whole = bucket[g]
    count = whole.bit_count()
    masks: dict[int, int] = {}
    for t, held in releases:
        grew = False
        for i, m in held:
            if pool_of[i] != index or not avail[i]:
                continue
            old = masks.get(i)
            if old is None:
                old = view.mask(i)
            new = old | m
            masks[i] = new
            if new == full:
                whole |= 1 << i
                count += 1
                grew = True
        if grew and count >= tasks:
            # The general walk's view at this release, as far as this job can tell.
            before = bucket[g]
            bucket[g] = whole
            placed = place_in_pool(view, pool, job)
            bucket[g] = before
            if placed is not None:
                return t, placed[0]
    return None


def _fits(p: Pass, job: Job, pools: list[Pool], touched: Held | None) -> Placement | None:
    """A placement for ``job`` if it fits now. ``touched``: the only nodes that gained GPUs
    since the last check (``None``: check everything)."""
    view = p.view
    total, g = job.total_gpus, job.gpus_per_task
    if touched is None:
        for pool in pools:
            if view.free[pool.index] >= total:
                placed = place_in_pool(view, pool, job)
                if placed is not None:
                    return placed[0]
        return None
    pool_of, free, avail = view.pool_of, view.free, p.state._avail
    tried = -1
    for i, _ in touched:
        pi = pool_of[i]
        if pi != tried and free[pi] >= total and avail[i] and view.mask(i).bit_count() >= g:
            tried = pi
            for pool in pools:
                if pool.index == pi:
                    placed = place_in_pool(view, pool, job)
                    if placed is not None:
                        return placed[0]
                    break
    return None


def _release_events(p: Pass, spare_preempted: bool) -> Iterator[tuple[float, Held]]:
    held = p.state._held
    claimed: Container[str] = p.claimed
    if spare_preempted and p.state._preempting:
        claimed = p.claimed | p.state._preempting.keys()
    in_state = _ends_in_state(p.state._ends, held, claimed, p.now)
    if not p.started:
        return in_state  # most walks: nothing started in this pass to merge in
    mine = sorted(((s.end, s.job_id, s.held) for s in p.started), key=lambda x: x[:2])
    return heapq.merge(in_state, [(e, h) for e, _, h in mine], key=lambda x: x[0])


# The two below are generator functions, not generator expressions, so that they stay
# lazy when mypyc compiles this module (it builds a generator expression's whole list):
# a walk usually stops long before the last of thousands of running jobs ends.
def _ends_in_state(
    ends: Iterable[tuple[float, str]], held: Mapping[str, Held], claimed: Container[str],
    now: float,
) -> Iterator[tuple[float, Held]]:
    for end, jid in ends:
        if jid not in claimed:
            # A job past its expected end may end any moment: count it as ending now.
            yield (end if end > now else now), held[jid]


def _as_releases(releases: Iterator[tuple[float, Held]]) -> Iterator[tuple[float, int, Held]]:
    for t, h in releases:
        yield t, 0, h
