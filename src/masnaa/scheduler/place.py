"""Placement: exact GPUs for a gang, topology-aware best fit, on a ``View``.

Rules (in this order):
1. a job whose whole gang fits on one node takes one node: the available node
   with the fewest free GPUs that still holds it (best fit, least
   fragmentation); ties go to the lowest node ordinal (deterministic);
2. otherwise, tasks are spread over nodes of the *smallest* topology domain
   (NVLink domain, then leaf switch, then site) whose free task slots hold the
   gang, choosing among domains of a level the one with the fewest free slots
   (best fit again); inside it, nodes with the most free GPUs first (whole free
   nodes before partial ones), lowest ordinal first;
3. a task never spans nodes: a node offers ``free // gpus_per_task`` slots;
4. on a node, the lowest free GPU indices are used.

``exclude`` is a bitmask of node ordinals the placement must avoid (nodes
reserved for a blocked job). Nothing here mutates the view.
"""

from __future__ import annotations

from masnaa.domain.job import Job, Placement, PlacementSlice
from masnaa.scheduler.state import Pool
from masnaa.scheduler.view import View

Score = tuple[int, int]
"""``(0, leftover GPUs)`` for one node; ``(1 + level, spare slots)`` for a spread gang."""


def place_in_pool(
    view: View, pool: Pool, job: Job, exclude: int = 0
) -> tuple[Placement, Score] | None:
    """Best placement of ``job`` in ``pool`` now, or ``None`` if it does not fit."""
    buckets = view.buckets[pool.index]
    total = job.total_gpus
    keep = ~exclude
    top = len(buckets)
    if total < top:
        for k in range(total, top):
            m = buckets[k] & keep
            if m:
                i = (m & -m).bit_length() - 1
                return Placement((view.slice_of(i, total),)), (0, k - total)
    if job.tasks == 1:
        return None
    g = job.gpus_per_task
    if g >= top:
        return None
    slots = 0
    for f in range(g, top):
        m = buckets[f] & keep
        if m:
            slots += (f // g) * m.bit_count()
    if slots < job.tasks:
        return None
    for level, domains in enumerate(pool.levels):
        if pool.level_max[level] < total:
            continue
        best: tuple[int, int] | None = None
        for _name, dmask, cap in domains:
            if cap < total:
                continue
            dm = dmask & keep
            s = 0
            for f in range(g, top):
                m = buckets[f] & dm
                if m:
                    s += (f // g) * m.bit_count()
            if s >= job.tasks and (best is None or s < best[0]):
                best = (s, dm)
        if best is not None:
            return _spread(view, buckets, best[1], job), (1 + level, best[0] - job.tasks)
    return None


def _spread(view: View, buckets: list[int], dmask: int, job: Job) -> Placement:
    g = job.gpus_per_task
    left = job.tasks
    slices: list[PlacementSlice] = []
    for f in range(len(buckets) - 1, g - 1, -1):
        m = buckets[f] & dmask
        while m and left:
            low = m & -m
            m ^= low
            i = low.bit_length() - 1
            n = min(f // g, left)
            slices.append(view.slice_of(i, n * g))
            left -= n
        if not left:
            break
    return Placement(tuple(slices))


def best_placement(
    view: View, pools: list[Pool], job: Job, exclude: int = 0
) -> tuple[Placement, Pool] | None:
    """The best fit over ``pools`` (all of one GPU type; ties: first pool)."""
    best: tuple[Placement, Score, Pool] | None = None
    for pool in pools:
        found = place_in_pool(view, pool, job, exclude)
        if found is not None and (best is None or found[1] < best[1]):
            best = (found[0], found[1], pool)
            if found[1] == (0, 0):
                break
    return None if best is None else (best[0], best[2])
