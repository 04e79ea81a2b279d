"""``PassView``: what a policy may read during a pass, and the policy-side types.

Owns the read-only interface between the policies (``policies``) and the pass
(``context.Pass``, its one implementation, through ``quota_view.QuotaView``), with
``Key`` (an order key, smaller first) and ``VictimTest``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Reversible, Sequence
from typing import TYPE_CHECKING

from masnaa.domain.job import Job, RunningJob
from masnaa.scheduler.queue import Entry

if TYPE_CHECKING:
    from masnaa.scheduler.config import SchedulerConfig

Key = tuple[float, ...]
VictimTest = Callable[[RunningJob], bool]
"""Whether one waiting job may preempt a given running job (built once per job)."""


class PassView:
    """What a policy may read during a pass; ``context.Pass`` is its one implementation.

    A base class rather than a ``Protocol``: a compiled core (mypyc) calls a base
    class's methods through its method table, but a protocol's by name, which cost 5 %
    of a masnaa replay (docs/performance.md).
    """

    now: float
    config: SchedulerConfig

    def priority(self, job: Job) -> int:
        raise NotImplementedError

    def class_of(self, name: str) -> tuple[int, bool, bool]:
        """``(value, preemptible, can_preempt)`` of a priority class (unknown: 0, yes, no)."""
        raise NotImplementedError

    def preemptible_floor(self) -> int | None:
        """The lowest priority value among the classes of running preemptible jobs
        (``None``: no running job may be preempted)."""
        raise NotImplementedError

    def running_groups(self) -> Mapping[tuple[str, str], Reversible[str]]:
        """Running job ids per (tenant, priority class), in allocation order."""
        raise NotImplementedError

    def victim_groups(self) -> Sequence[tuple[str, str]]:
        """``(tenant, class)`` of every running group whose class is preemptible, in
        victim order: lowest class value first, then the tenant most over its share."""
        raise NotImplementedError

    def running_oldest_first(self) -> Iterable[RunningJob]:
        raise NotImplementedError

    def running_job(self, job_id: str) -> RunningJob:
        raise NotImplementedError

    def preemptible(self, job: Job) -> bool:
        raise NotImplementedError

    def can_preempt(self, job: Job) -> bool:
        raise NotImplementedError

    def tenant_ratio(self, tenant: str, extra_gpus: int = 0) -> float:
        """``(decayed usage + (GPUs held + extra) × horizon) / share``; lower is less served."""
        raise NotImplementedError

    def level(self, attained: float) -> int:
        raise NotImplementedError

    def starving(self, entry: Entry) -> bool:
        """Waited ``starvation_limit`` (promoted ahead of every tenant)."""
        raise NotImplementedError

    def starving_in_tenant(self, entry: Entry) -> bool:
        """Waited ``tenant_starvation_limit`` (promoted within its tenant, masnaa)."""
        raise NotImplementedError

    def running_attained(self, victim: RunningJob) -> float:
        """GPU-seconds a running job attained, this run included."""
        raise NotImplementedError

    def lost_work(self, victim: RunningJob) -> float:
        """GPU-seconds a victim would lose: work since its last checkpoint."""
        raise NotImplementedError

    def run_time(self, victim: RunningJob) -> float:
        raise NotImplementedError

    def reclaims(self, entry: Entry, victim: RunningJob) -> bool:
        """Whether the waiting job is within its nominal quota where the victim borrows."""
        raise NotImplementedError

    def reclaim_test(self, entry: Entry, gpus: int | None = None) -> VictimTest | None:
        """``reclaims`` for one waiting job, its own side worked out once (``None``: it
        may reclaim from nobody now); ``gpus``: as if the job asked for that many."""
        raise NotImplementedError

    def reclaim_from(
        self, entry: Entry, gpus: int | None = None
    ) -> Mapping[tuple[str, int], int] | None:
        """GPUs per (tenant, pool) held beyond nominal that the waiting job may take
        back (``None``: nobody's)."""
        raise NotImplementedError

    def remaining(self, job_id: str) -> float:
        """True remaining runtime (oracle policies only; raises otherwise)."""
        raise NotImplementedError

    def lends(self, tenant: str) -> bool:
        """Whether others borrow GPUs where ``tenant`` has room for one more within its
        nominal quota (a job of it that waited ``reclaim_after`` may take them back)."""
        raise NotImplementedError

    def starts_now(self) -> bool:
        """Whether this pass starts jobs (not in the state yet: their runs begin now)."""
        raise NotImplementedError

    def revisit(self, at: float) -> None:
        """A rule that reads the clock says yes at ``at`` where it said no now: the pass
        reports the earliest such time as ``Decision.review_at`` (``Policy.review``)."""
        raise NotImplementedError
