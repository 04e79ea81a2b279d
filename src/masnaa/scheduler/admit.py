"""The ``admit`` phase: which pending jobs may be considered at all in this pass.

Owns three rules. A job that can never run as asked (no node of an acceptable type
where it may run, or a gang larger than any eligible site) is *rejected*, checked
once per job shape. A job whose project's allocation balance is spent in every
pool *waits* with ``WaitCode.ALLOCATION_EXHAUSTED`` (see ``snapshot`` for the
balance rule). And a job of a project that still has time somewhere may use only
the pools (site, GPU type) where it has time left (``funded_pools``): the time
of a grant at one site is no licence to run at another. When none of the pools
it may use has time left, it waits with the same code and a reason naming the
pools that do.

Balances are per pool because that is where the time is: an allocation grants
GPU-hours per (site, GPU type), and the job charges the pool it runs in. Narrowing
the pools here, rather than the driver narrowing ``Job.sites`` and
``Job.gpu_types``, keeps the rule exact (the pools with time left are not always a
product of sites and types; what the pass itself commits moves them within the
pass) and leaves the twin, which passes no balances, on the path it had.

A spent project stays spent for the rest of the pass: its balances are read once,
and what the pass commits to it only grows, and only when one of its jobs
starts. So once every project of a sub-queue is spent, ``order`` passes over the
whole sub-queue in one step (``spent_sub_queue``), and over a whole group of
sub-queues when all of theirs are, rather than keying and trying their jobs one
by one. Their jobs are not listed in ``Decision.waiting``: the decision names
the spent projects once (``Decision.spent``), so that a pass with ten thousand
jobs of spent projects does not write ten thousand reasons.
"""

from __future__ import annotations

from collections.abc import Mapping

from masnaa.domain.job import Job
from masnaa.domain.reasons import Phrase
from masnaa.scheduler.context import Pass, PoolsByType
from masnaa.scheduler.decision import Wait, WaitCode
from masnaa.scheduler.queue import SubQueueKey


def reject(p: Pass) -> None:
    """Reject every pending job that can never run as asked, whatever its place in line.

    Checked per distinct job *shape* (types, sites, tasks, GPUs per task), so this
    costs O(shapes), not O(pending).
    """
    for shape, ids in p.pending.shapes().items():
        gpu_types, sites, tasks, gpt = shape
        pools = p.eligible_pools_for(gpu_types, sites)
        wait: Wait | None = None
        if not pools:
            types = ", ".join(gpu_types)
            wait = Wait(
                WaitCode.NO_ELIGIBLE_SITE,
                Phrase("wait-no-type-anywhere", {"types": types})
                if sites is None
                else Phrase("wait-no-type-at", {"types": types, "sites": ", ".join(sites)}),
            )
        elif not any(
            gpt < len(pool.slots) and pool.slots[gpt] >= tasks for group in pools for pool in group
        ):
            biggest = max(pool.capacity for group in pools for pool in group)
            widest = max(pool.max_node_gpus for group in pools for pool in group)
            wait = Wait(
                WaitCode.TOO_LARGE,
                Phrase("wait-too-large", {"tasks": tasks, "gpt": gpt, "biggest": biggest,
                                          "widest": widest}),
            )
        if wait is not None:
            for job_id in ids:
                p.decision.rejected[job_id] = wait


def admit(p: Pass, job: Job) -> bool:
    """Skip rejected jobs and jobs whose project's allocation is spent (those wait
    for ``Decision.spent``)."""
    return job.id not in p.decision.rejected and spent(p, job.project) is None


def spent_sub_queue(p: Pass, key: SubQueueKey) -> bool:
    """Whether every project with jobs in the sub-queue ``key`` has spent its
    allocation, so that none of its jobs may start for the rest of the pass."""
    known = p.spent  # read inline: this runs at every sub-queue head a pass visits
    for project in p.pending.queue_projects(key):
        why = known[project] if project in known else spent(p, project)
        if why is None:
            return False
    return True


def spent_projects(p: Pass) -> dict[str, Wait]:
    """Every project with pending jobs whose allocation is spent at the end of the
    pass, with the reason its jobs wait (``Decision.spent``). O(pending projects):
    a site's book may hold thousands of projects with nothing queued."""
    if not p.snapshot.balances:
        return {}
    return {
        project: why for project in p.pending.projects() if (why := spent(p, project)) is not None
    }


def spent(p: Pass, project: str) -> Wait | None:
    """The reason the project's jobs wait, if its allocation is spent in every pool.
    Kept in ``p.spent`` until the pass next commits to the project (``Pass._commit``),
    which a spent project never sees again."""
    spent = p.spent
    if project in spent:
        return spent[project]
    balances = p.snapshot.balances
    why: Wait | None = None
    if balances is not None and project in balances:
        pools = balances[project]
        committed = p.committed.get(project)
        if not any(_left(pools, committed, pool) > 0 for pool in pools):
            # A float start: without it mypyc types the sum as an int.
            left = sum(pools.values(), 0.0) - (sum(committed.values(), 0.0) if committed else 0.0)
            why = Wait(
                WaitCode.ALLOCATION_EXHAUSTED,
                Phrase("wait-no-allocation-left", {"project": project,
                                                   "hours": f"{left / 3600:.1f}"}),
            )
    spent[project] = why
    return why


def funded_pools(p: Pass, job: Job) -> PoolsByType | None:
    """The job's eligible pools where its project has time left, in the same order;
    ``None`` when there is none, after recording why it waits.

    The pools themselves (the very object ``Pass.eligible_pools`` returns) when
    nothing is taken away, so callers can tell a narrowed set by identity and keep
    memos that hold for every job of a shape out of it. Cached per project and
    eligibility until the pass next commits to the project.
    """
    pools = p.eligible_pools(job)
    balances = p.snapshot.balances
    if balances is None or job.project not in balances:
        return pools
    known = p.funded.setdefault(job.project, {})
    elig = (job.gpu_types, job.sites)
    found = known.get(elig)
    if found is None:
        found = known[elig] = _narrow(p, job.project, pools, balances[job.project])
    if isinstance(found, Wait):
        p.wait(job, found.code, found.why)
        return None
    return found


def _narrow(
    p: Pass, project: str, pools: PoolsByType, left: Mapping[tuple[str, str], float]
) -> PoolsByType | Wait:
    committed = p.committed.get(project)
    groups = []
    narrowed = False
    for group in pools:
        kept = tuple(
            pool for pool in group if _left(left, committed, (pool.site, pool.gpu_type)) > 0
        )
        narrowed = narrowed or len(kept) != len(group)
        if kept:
            groups.append(kept)
    if not narrowed:
        return pools
    if groups:
        return tuple(groups)
    here = ", ".join(f"{pool.site}:{pool.gpu_type}" for group in pools for pool in group)
    funded = ", ".join(
        f"{site}:{gpu_type} ({v / 3600:.1f} GPU-hours)"
        for (site, gpu_type) in sorted(left)
        if (v := _left(left, committed, (site, gpu_type))) > 0
    )
    return Wait(
        WaitCode.ALLOCATION_EXHAUSTED,
        Phrase("wait-no-allocation-here", {"project": project, "pools": here, "funded": funded}),
    )


def _left(
    balances: Mapping[tuple[str, str], float],
    committed: Mapping[tuple[str, str], float] | None,
    pool: tuple[str, str],
) -> float:
    """What the project has left in ``pool`` after what the pass committed there."""
    return balances.get(pool, 0.0) - (committed.get(pool, 0.0) if committed else 0.0)
