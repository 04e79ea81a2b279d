"""``earlier_by_reclaim``: start estimates that count a quota reclaim to come.

The release walk (``release.earliest_fit``) dates a blocked job's start by when
running jobs end. A job within its tenant's nominal quota whose GPUs are lent to
other tenants does not wait for that: once it has waited ``reclaim_after`` it may
preempt the borrowers (rule 2, ``quota_view``), who then have their class's grace
period to checkpoint. With day-long time limits and a two-hour ``reclaim_after``,
the walk alone would tell a researcher "in 24 h" for a job that starts in about two.

The estimate stays a lower bound, as every estimate of the pass: the reclaim time
plus the shortest grace among the classes of the jobs it could stop; whether the
victims' GPUs form a placement is not checked.
"""

from __future__ import annotations

from masnaa.domain.job import Job
from masnaa.domain.reasons import Phrase
from masnaa.scheduler.context import Pass, PoolsByType
from masnaa.scheduler.decision import Wait


def earlier_by_reclaim(p: Pass, targets: list[tuple[Job, PoolsByType]]) -> None:
    """Lower the estimate (and say why) of each target a reclaim would start sooner."""
    if not (p.policy.preemptive and p.policy.uses_quotas and p.quota_pools):
        return
    if p.reservation is not None:  # the first blocked job: dated by its reservation
        held = p.pending.get(p.reservation.job_id)
        targets = [(held, p.eligible_pools(held)), *targets]
    # What earlier jobs were dated by: a borrower's GPUs, and a tenant's room under its
    # nominal quota, serve one reclaim each, so the next job is not dated by the same.
    promised: dict[tuple[str, int], int] = {}
    taken: dict[str, int] = {}
    for job, pools in targets:
        w = p.decision.waiting.get(job.id)
        if w is None:
            continue
        at = _reclaim_start(p, job, pools, promised, taken)
        if at is not None and (w.estimated_start is None or at < w.estimated_start):
            why = Phrase("wait-reclaim", {"tenant": job.tenant, "gpus": job.total_gpus,
                                          "after": p.config.reclaim_after})
            p.decision.waiting[job.id] = Wait(w.code, why, estimated_start=at)


def _reclaim_start(
    p: Pass, job: Job, pools: PoolsByType, promised: dict[tuple[str, int], int],
    taken: dict[str, int],
) -> float | None:
    """When ``job`` could start by taking back lent GPUs (``None``: it could not);
    counts what it would take in ``promised`` and ``taken``."""
    before = taken.get(job.tenant, 0)
    excess = p._excess_of(job.tenant, before + job.total_gpus)
    if excess is None:
        return None
    mine = {pool.index for group in pools for pool in group}
    left = {key: gpus - promised.get(key, 0) for key, gpus in excess.items() if key[1] in mine}
    borrowers = {tenant for (tenant, _), gpus in left.items() if gpus > 0}
    if sum(gpus for gpus in left.values() if gpus > 0) < job.total_gpus:
        return None
    # The shortest grace among the classes the borrowers run that the job may stop: of
    # its own value (a reclaim), or lower if its class may preempt (``Masnaa.victim_test``).
    value, can = p.priority(job), p.can_preempt(job)
    grace: float | None = None
    for tenant, name in p.running_groups():
        theirs, preemptible, _ = p.class_of(name)
        if tenant in borrowers and preemptible and (theirs == value or (can and theirs < value)):
            pc = p.classes.get(name)
            g = p.config.default_grace if pc is None else pc.grace_seconds
            grace = g if grace is None else min(grace, g)
    if grace is None:
        return None
    need = job.total_gpus
    for key, gpus in left.items():
        take = min(need, max(0, gpus))
        promised[key] = promised.get(key, 0) + take
        need -= take
    taken[job.tenant] = before + job.total_gpus
    since = p.pending.entry(job.id).since
    return max(p.now, since + p.config.reclaim_after) + grace
