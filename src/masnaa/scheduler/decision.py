"""What one scheduling pass chose: the ``Decision``.

The core only *chooses*; drivers (the service, the twin) *do*. A decision is
self-contained: applying it needs nothing but the driver's own state.

- ``starts``: jobs to launch now, each with its exact placement;
- ``preemptions``: running jobs to stop, each with a checkpoint grace period;
- ``reservations``: future starts promised to blocked jobs (EASY backfill);
- ``waiting``: for pending jobs the pass looked at, why they wait and, where
  computable, when they should start. Jobs the pass did not reach (it stops
  scanning once nothing further can fit) share ``default_wait``;
- ``spent``: projects with pending jobs whose allocation balance is spent, each
  with the reason their jobs wait (``WaitCode.ALLOCATION_EXHAUSTED``) unless
  ``waiting`` gives one of its own;
- ``review_at``: when a rule that reads the clock and held this pass back would
  read otherwise, for drivers that run passes only on events (see the field).

Use ``wait_for(job_id, project)`` rather than indexing ``waiting``.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from enum import StrEnum

from masnaa.domain.job import Placement
from masnaa.domain.reasons import Phrase, Reason


class WaitCode(StrEnum):
    """Machine-readable reasons a job waits. Stable: the API exposes them."""

    NO_CAPACITY = "no-capacity"
    """Not enough free GPUs of an acceptable type right now."""
    RESERVED = "reserved"
    """Blocked at the head; GPUs are reserved for it at ``estimated_start``."""
    BACKFILL_WOULD_DELAY = "backfill-would-delay"
    """Would fit now, but starting it would delay a reservation."""
    QUOTA = "quota"
    """Starting it would exceed the tenant's quota (nominal + borrowing limit)."""
    FAIR_SHARE = "fair-share"
    """Other tenants are further below their entitled share."""
    PRIORITY = "priority"
    """Higher-priority jobs come first."""
    WAITING_FOR_PREEMPTION = "waiting-for-preemption"
    """Victims were asked to stop; it starts when their grace period ends."""
    NO_ELIGIBLE_SITE = "no-eligible-site"
    """No site it may run at has an acceptable GPU type."""
    ALLOCATION_EXHAUSTED = "allocation-exhausted"
    """The project's allocation balance cannot cover it."""
    NODES_UNAVAILABLE = "nodes-unavailable"
    """Enough GPUs exist, but nodes are drained or down."""
    TOO_LARGE = "too-large"
    """It asks for more GPUs than any eligible site has: it can never run."""
    NOT_CONSIDERED = "not-considered"
    """The pass stopped scanning before reaching it (queue behind blocked jobs)."""


@dataclass(frozen=True, slots=True)
class Start:
    job_id: str
    placement: Placement
    gpu_type: str
    site: str
    backfilled: bool = False
    borrowed_gpus: int = 0
    """GPUs beyond the tenant's nominal quota, i.e. reclaimable."""


@dataclass(frozen=True, slots=True)
class Preemption:
    job_id: str
    grace_seconds: float
    reason: Reason
    """Why it is stopped (``masnaa.domain.reasons``)."""
    beneficiary: str | None = None
    """The pending job this makes room for, if any."""


@dataclass(frozen=True, slots=True)
class Reservation:
    job_id: str
    start_time: float
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    code: WaitCode
    why: Phrase
    """The details, as a phrase (``masnaa.domain.reasons``): ``message`` in English."""
    estimated_start: float | None = None

    @property
    def message(self) -> str:
        return str(self.why)


@dataclass(slots=True)
class Decision:
    starts: list[Start] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    waiting: dict[str, Wait] = field(default_factory=dict)
    default_wait: Wait = field(
        default_factory=lambda: Wait(WaitCode.NOT_CONSIDERED, Phrase("wait-not-considered"))
    )
    rejected: dict[str, Wait] = field(default_factory=dict)
    """Jobs that can never run as asked (e.g. ``TOO_LARGE``); drivers fail them."""
    spent: dict[str, Wait] = field(default_factory=dict)
    """Project with pending jobs → why they wait: its allocation balance is spent."""
    site_choices: dict[str, Phrase] = field(default_factory=dict)
    """Job id → why its ``Start`` is at that site, for jobs that more than one
    eligible site could start now (``place.SiteChoice``)."""
    review_at: float | None = None
    """The earliest time after ``now`` at which a clock-driven rule that said "not
    yet" in this pass says yes with no other change: a waiting job reaching
    ``reclaim_after`` while others borrow its quota, or a starvation limit; a victim
    candidate's run reaching ``min_run_before_preemption`` or the service level that
    lets the waiting job stop it. ``None``: no such time. A driver that runs passes
    only when something happens (the twin) runs one then too, as the service's
    periodic loop does anyway. Fair-share usage drifts continuously and is not
    counted: it is read again at the next pass."""

    def reserved_for(self, before: str | None, pending: Container[str]) -> str | None:
        """The job holding the EASY reservation after this decision is applied, for the
        next pass's ``Snapshot.reserved_for``: this decision's, or else ``before`` while
        it still waits (a pass that reserved nothing, e.g. because the holder waited on
        its quota, ended no hold)."""
        if self.reservations:
            return self.reservations[0].job_id
        return before if before is not None and before in pending else None

    def wait_for(self, job_id: str, project: str | None = None) -> Wait:
        """Why the job waits. Without its ``project``, an allocation wait reads as
        the default wait."""
        return (
            self.rejected.get(job_id)
            or self.waiting.get(job_id)
            or (self.spent.get(project) if project is not None else None)
            or self.default_wait
        )
