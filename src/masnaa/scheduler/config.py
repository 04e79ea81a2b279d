"""``SchedulerConfig``: the policy name and the knobs of one scheduling pass.

Every knob has a default that works for a 10,000-GPU factory; each says what
it trades. Validation happens at construction: an unknown policy raises
``KeyError`` naming the valid ones; an out-of-range knob raises ``ValueError``.
The fair-share half-life is not here: it belongs to the ``UsageLedger``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

from masnaa.scheduler.queue import DEFAULT_LAS_THRESHOLDS


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    policy: str = "masnaa"
    """Name of a policy in ``POLICIES``."""

    backfill_depth: int = 500
    """Blocked jobs a pass examines (like Slurm's ``bf_max_job_test``): the scan stops at
    the blocked job that comes after the first ``max(1, backfill_depth)`` of them. Jobs
    that fit start until then, so ``0`` does not turn backfill off. Bounds the cost of a
    pass; jobs beyond it share ``Decision.default_wait``."""

    las_thresholds: tuple[float, ...] = DEFAULT_LAS_THRESHOLDS
    """Attained-service thresholds (GPU-seconds) between service levels; must equal the
    ``PendingQueue``'s."""

    starvation_limit: float = 6 * 3_600.0
    """``las``: seconds a job may wait in the queue before it is promoted ahead of every
    job of its priority class that is not starving. ``masnaa`` reads it only with
    ``promote_ahead_of_tenants``."""

    tenant_starvation_limit: float = 30 * 86_400.0
    """``masnaa``: seconds a job may wait before it goes first in its own tenant's line,
    ahead of the tenant's jobs at lower service levels (fair share still orders the
    tenants); ``0`` never promotes. It bounds how long a job preempted before (requeued
    at a higher service level) can be passed by its tenant's new jobs. A month, because
    on whole Philly every limit from 6 to 72 hours put promoted gangs at the head of
    their tenant's line often enough to raise p99 queueing delay above the old rule's
    at both loads (docs/performance.md)."""

    promote_ahead_of_tenants: bool = False
    """``masnaa``: a job that has waited ``starvation_limit`` goes ahead of every job of its
    priority class, oldest first, whatever its tenant (the rule before 2026-11-26). In
    busy weeks most of the queue is past a limit of hours, so the queue then runs in
    order of age instead of fair share. On whole Philly (three replays each,
    docs/performance.md, with ``fair_share_horizon`` then 600 s) it gave a shorter longest
    wait (1,318 h at load 0.9 and 486 h at 0.7, against 1,949 h and 1,237 h) for about
    twice the mean JCT (49.0 h and 18.1 h, against 24.7 h and 10.4 h) and, at 0.7,
    almost twice the p99 queueing delay (113.0 h against 59.4 h)."""

    hold_reservation: bool = False
    """The job that held the EASY reservation in the last decision a driver applied
    (``Snapshot.reserved_for``) comes first in the next pass, ahead of every job of its
    priority class and the lower ones, until it starts: a drain once begun is not handed
    to whichever blocked job fair share puts first next (Maui's reservation policy
    ``HIGHEST``). On whole Philly (three replays each, docs/performance.md) it lifts
    Jain's index at load 0.7 from 0.9973 to 0.9983 and cuts p99 queueing delay there
    by a quarter, for a mean JCT 22 % longer at 0.7 and 8 % at 0.9, and at 0.9 one
    replay in three left a tenant at 0.89 of its fair share."""

    default_grace: float = 120.0
    """Checkpoint grace for victims whose priority class is unknown."""

    max_preemptions_per_pass: int = 32
    """Most preemptions one pass may issue."""

    preemption_attempts_per_pass: int = 4
    """Most blocked jobs one pass tries to make room for by preemption. A job the policy
    says may stop no one does not count: a pass that looks at it only to estimate its
    start must not spend the attempt a later job could use."""

    max_victims_per_job: int = 64
    """Most victims one blocked job may cause to stop."""

    victim_scan_limit: int = 128
    """Most running jobs one preemption attempt examines (in least-loss order)."""

    min_run_before_preemption: float = 300.0
    """A job that has run less than this (seconds) in its current run is never a victim
    of fair-share or service-level preemption (priority and quota reclaim ignore it).
    Damps thrashing."""

    fair_share_horizon: float = 86_400.0
    """``masnaa`` ranks tenants by ``(decayed usage + running GPUs × horizon) / share``: the
    horizon makes the GPUs a tenant holds right now count, so one pass spreads starts
    over tenants instead of handing all free GPUs to the least-served one, and a tenant
    that holds much now yields to one that waits, whatever their pasts. With the 7-day
    half-life a tenant holding G GPUs for weeks has a decayed usage of about
    G × 872,000 s, so one day puts the GPUs held now at a tenth of the ratio. On whole
    Philly at load 0.9 (three replays each, docs/performance.md) one day gave p99
    queueing 379.4 h against 447.7 h with 600 s, mean JCT 23.9 h against 24.7 h and
    the worst tenant 0.935 of its share against 0.915; 12 hours and 2 days were worse
    at p99 on the plain replay (435.5 h, 417.4 h), 7 days worse at 0.7 (65.8 h)."""

    fair_share_preemption: bool = False
    """``masnaa`` may preempt a job of a tenant more served than the waiting job's tenant
    (relative to shares) when the victim has reached a higher service level. Off by
    default: on a week of Philly at load 0.9 it preempted 14× more (404 vs 29), lost 6×
    the GPU-hours and raised p99 queueing delay from 1.69 h to 1.79 h for no gain in mean
    JCT; fair-share ordering, EASY backfill and quota reclaim carry fairness."""

    short_first_in_tenant: bool = False
    """``masnaa`` may preempt a job of the waiting job's own tenant and priority class
    that ran at least ``min_run_before_preemption``, reached service level
    ``victim_min_level`` and a higher level than the waiting job, and would lose at
    most ``victim_max_loss`` seconds of work (it checkpointed a moment ago): least
    attained service first inside a tenant's share, as las does across all of them.
    Off by default. On whole Philly at load 0.9 with the other defaults of 2026-11-27
    (docs/performance.md, "Where the mean-JCT gap to las lies, by tenant") it changes
    mean JCT within the replays' noise (22.57 h against 22.36 h) and costs 3.4 points
    of utilisation; with ``spare_after_requeues=0`` and ``victim_max_loss=1800`` it
    reaches 20.72 h, but stopping the trace's longest job ten times costs 8 points.
    ``spare_after_requeues`` also bounds these swaps. Needs
    drivers that say when runs checkpoint (``RunningJob.checkpoint_every``): the twin does;
    elsewhere a victim is taken to lose all its run, and the rule rarely fires."""

    victim_min_level: int = 2
    """Lowest service level (``las_thresholds``) of a ``short_first_in_tenant`` victim:
    jobs that have not yet used 10 GPU-hours (by default) are not stopped for others."""

    victim_max_loss: float = 300.0
    """Most seconds of work since its last checkpoint a ``short_first_in_tenant`` victim
    may lose."""

    spare_after_requeues: int = 2
    """``masnaa``: a job already requeued this many times is no longer a victim of jobs of
    its own priority class (quota reclaim, swaps); a higher class may still stop it.
    ``0`` spares no one. Without it a borrowing tenant's job could be reclaimed, restarted
    on idle GPUs and reclaimed again: on whole Philly one job was stopped 25 times at
    load 0.9 and one 39 times at 0.7. With 2, over three replays each
    (docs/performance.md), the longest wait fell from 1,881 h to 1,318 h at load 0.9
    and from 680 h to 486 h at 0.7, and the work lost by preemption by 40-60 %; mean
    JCT moved within the replays' noise, p99 queueing delay rose by 6 % and 10 % on the
    means (428.5 → 454.8 h, 102.9 → 113.0 h). The price: a tenant within its nominal
    may wait for a spared job to end instead of reclaiming it."""

    reclaim_after: float = 2 * 3_600.0
    """Seconds a job within its nominal quota waits for GPUs to free up on their own before
    it reclaims lent GPUs by preemption. On the bursty Philly trace an immediate reclaim
    preempted ~30× more and doubled p99 queueing delay; two hours keeps the guarantee for
    long waits only."""

    estimate_depth: int = 16
    """Waiting jobs, after the reserved one, that get an estimated start time. Estimates
    only explain: they never change what starts, is preempted or is reserved. ``0``
    turns them off (the twin does, as it never reads them)."""

    review_times: bool = False
    """Fill ``Decision.review_at``: when a rule that reads the clock next lets a waiting
    job do what it may not do now. A driver that runs passes only when something
    happens needs it (the twin sets it); the service runs a pass every tick anyway. It
    costs, per pass of a preemptive policy, a bisection per sub-queue and wait limit
    and, under las, a look at every running job."""

    explain_waits: bool = True
    """Give every blocked job a wait reason. ``False`` leaves jobs that merely lack
    free GPUs out of ``Decision.waiting`` (they get ``default_wait``) and leaves
    ``Decision.site_choices`` empty: what starts,
    is preempted or is reserved stays the same, the pass is cheaper when many jobs
    are blocked. The twin turns it off; the service must not (users read reasons)."""

    def __post_init__(self) -> None:
        from masnaa.scheduler.policies import POLICIES

        if self.policy not in POLICIES:
            raise KeyError(
                f"unknown scheduling policy {self.policy!r}; valid names: "
                + ", ".join(sorted(POLICIES))
            )
        for name in (
            "backfill_depth",
            "max_preemptions_per_pass",
            "preemption_attempts_per_pass",
            "max_victims_per_job",
            "victim_scan_limit",
            "estimate_depth",
            "victim_min_level",
            "spare_after_requeues",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        for name in (
            "starvation_limit",
            "tenant_starvation_limit",
            "default_grace",
            "min_run_before_preemption",
            "reclaim_after",
            "victim_max_loss",
        ):
            # "not ≥ 0" rather than "< 0": NaN compares false either way, and would
            # otherwise pass and silently turn a rule off.
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be ≥ 0 seconds, got {getattr(self, name)}")
        if not self.fair_share_horizon >= 0:
            raise ValueError(f"fair_share_horizon must be ≥ 0, got {self.fair_share_horizon}")
        t = self.las_thresholds
        if list(t) != sorted(t) or any(x <= 0 for x in t):
            raise ValueError(f"las_thresholds must be positive and ascending, got {t!r}")


TUNABLE: tuple[str, ...] = tuple(
    f.name
    for f in fields(SchedulerConfig)
    if f.name not in ("policy", "las_thresholds", "estimate_depth", "explain_waits")
)
"""Knobs a driver may set from text (``knob``): numbers and switches. The policy is
chosen on its own; service levels must match the queue's; explanations are the
driver's business."""


def knob(text: str) -> tuple[str, float | int | bool]:
    """``"name=value"`` → ``(name, value)``, typed like the knob's default.

    Raises ``ValueError`` naming the valid knobs, or the expected kind of value.
    Range checks happen when the ``SchedulerConfig`` is built.
    """
    name, sep, raw = text.partition("=")
    name, raw = name.strip().replace("-", "_"), raw.strip()
    if not sep or name not in TUNABLE:
        raise ValueError(
            f"{text!r} is not NAME=VALUE with a known scheduler knob; valid knobs: "
            + ", ".join(TUNABLE)
        )
    default = getattr(SchedulerConfig(), name)
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
                raise ValueError(raw)
            return name, raw.lower() in ("true", "1", "on", "yes")
        if isinstance(default, int):
            return name, int(raw)
        value = float(raw)
        if math.isnan(value):
            raise ValueError(raw)
        return name, value
    except ValueError:
        kind = {bool: "true or false", int: "a whole number"}.get(type(default), "a number")
        raise ValueError(f"knob {name} takes {kind}, got {raw!r}") from None


def knobs(texts: Iterable[str]) -> tuple[tuple[str, float | int | bool], ...]:
    """Several ``"name=value"`` texts (``knob``); a knob named twice raises ``ValueError``,
    since which of the two values was meant cannot be told."""
    parsed = tuple(knob(text) for text in texts)
    names = [name for name, _ in parsed]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"knob {', '.join(twice)} is set more than once; set each knob once")
    return parsed
