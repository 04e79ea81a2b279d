"""Balances: what is left of each allocation and project, in GPU-seconds.

    remaining(pool) = released(pool) − charged usage(pool)

where *released* counts released tranches, supplements and exchanged credits
(``Allocation.released``) and *charged usage* is the usage records charged to
the allocation after the preempted-time rule (``metering.charged_seconds``),
so money and grants see the same GPU-seconds.

An allocation is **usable** at ``now`` when it is awarded, active or exhausted
and ``start ≤ now < expiry``. A job charges one usable allocation of its
project that has GPU-time left in the job's pool, the one expiring first
(``choose_allocation``): time that would lapse soonest is used first.

The scheduler's input is ``project_balances``: project → pool (site, GPU
type) → remaining GPU-seconds over its usable allocations, each allocation's
pool counted at ≥ 0 and only pools with time left listed. Every project named
in ``limited`` gets an entry (empty when it has nothing usable); projects not
named — postpaid commercial projects — are absent, meaning "not limited by an
allocation". Balances are per pool, not per project, because the time of a
grant is for its pool: a job may start only in a pool where its project has
time left, which is also the pool ``choose_allocation`` then charges (the
scheduler narrows each job to those pools, ``scheduler.admit``).

**Overdraft.** Admission checks the balance once, at start: the scheduler
admits a job into a pool while the project's balance there minus GPUs × time
limit of the jobs it started for that project in that pool in the same pass
stays > 0. A running job is never
stopped for its balance: it may run to its time limit. So a balance can go
negative, by at most the GPU × time-limit worth of the project's jobs running
when it crossed zero (``overdraft_bound``). The overdraft stays on the
allocation that was charged and is shown on statements and in the funders'
report (``overdraft``); it is not taken from the project's other allocations.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from masnaa.accounting.allocation import LIVE, Allocation, Pool, State
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, Instant, day_of
from masnaa.accounting.metering import (
    ChargePolicy,
    Segment,
    UsageRecord,
    Window,
    charged_seconds,
    uncharged_window,
)
from masnaa.domain.reasons import Phrase

Used = dict[str, dict[Pool, int]]
"""allocation id → pool → charged GPU-seconds."""


def used_by_allocation(
    records: Iterable[UsageRecord], windows: Mapping[str, Mapping[int, Window]]
) -> Used:
    out: Used = {}
    for r in records:
        if r.allocation is None:
            continue
        pools = out.setdefault(r.allocation, {})
        pool = (r.site, r.gpu_type)
        pools[pool] = pools.get(pool, 0) + charged_seconds(r, windows)
    return out


def usable(a: Allocation, now: Instant) -> bool:
    return a.state in LIVE and a.starts_at <= now < a.expires_at


def remaining(a: Allocation, used: Mapping[Pool, int]) -> dict[Pool, int]:
    """Released minus charged, per pool; negative in overdraft."""
    out = a.released()
    for p, u in used.items():
        out[p] = out.get(p, 0) - u
    return out


def overdraft(a: Allocation, used: Mapping[Pool, int]) -> int:
    """GPU-seconds charged beyond what was released (≥ 0)."""
    return sum(max(0, -v) for v in remaining(a, used).values())


def overdraft_bound(running: Iterable[tuple[int, Instant]], now: Instant) -> int:
    """The most a balance can still fall: Σ GPUs × (time-limit end − now) of
    the project's running jobs, given as ``(gpus, limit_end)``."""
    return sum(g * max(0, end - now) for g, end in running)


Balances = dict[str, dict[Pool, int]]
"""project → pool → remaining GPU-seconds (> 0; a pool with nothing left is absent)."""


def _left(a: Allocation, used: Mapping[Pool, int]) -> dict[Pool, int]:
    """What ``a`` adds to its project's balances: its pools with time left."""
    return {pool: v for pool, v in remaining(a, used).items() if v > 0}


def project_balances(
    allocations: Iterable[Allocation], used: Used, now: Instant, limited: Iterable[str]
) -> Balances:
    """``Snapshot.balances``: project → pool → remaining GPU-seconds (see module doc)."""
    out: Balances = {p: {} for p in limited}
    for a in allocations:
        if a.project not in out or not usable(a, now):
            continue
        pools = out[a.project]
        for pool, v in _left(a, used.get(a.id, {})).items():
            pools[pool] = pools.get(pool, 0) + v
    return out


def total(pools: Mapping[Pool, int]) -> int:
    """A project's balance over all its pools, for people (the scheduler reads pools)."""
    return sum(pools.values())


class BalanceBook:
    """``project_balances`` kept up to date incrementally, for the driver.

    Recomputing every allocation before each scheduling pass costs
    O(allocations); the book instead updates one allocation per event:
    ``put`` (award, tranche, supplement, exchange, close …), ``charge`` (a new
    usage record) and ``advance`` (the clock passed a start or an expiry). Its
    ``balances`` equal ``project_balances`` over the same inputs (a test checks
    it). Not thread-safe; the control loop owns it.
    """

    def __init__(self, limited: Iterable[str]) -> None:
        self._balances: Balances = {p: {} for p in limited}
        self._allocs: dict[str, Allocation] = {}
        self._used: Used = {}
        self._contrib: dict[str, dict[Pool, int]] = {}
        self._now: Instant | None = None
        self._boundaries: list[tuple[Instant, str]] = []

    @property
    def balances(self) -> Mapping[str, Mapping[Pool, int]]:
        """Read-only view to hand to ``Snapshot.balances`` (the inner mappings are the
        book's own: read them, do not keep them across events)."""
        return MappingProxyType(self._balances)

    def _refresh(self, alloc_id: str) -> None:
        a = self._allocs[alloc_id]
        old = self._contrib.get(alloc_id, {})
        new: dict[Pool, int] = {}
        if self._now is not None and usable(a, self._now):
            new = _left(a, self._used.get(alloc_id, {}))
        self._contrib[alloc_id] = new
        pools = self._balances.get(a.project)
        if pools is None:
            return
        for pool in old.keys() | new.keys():
            v = pools.get(pool, 0) + new.get(pool, 0) - old.get(pool, 0)
            if v > 0:
                pools[pool] = v
            else:
                pools.pop(pool, None)

    def put(self, a: Allocation, now: Instant) -> None:
        """Add or replace an allocation (after any command on it)."""
        old = self._allocs.get(a.id)
        if old is not None and old.project != a.project:
            raise AccountingError(
                "project-changed", f"allocation {a.id!r} cannot move to another project"
            )
        self._allocs[a.id] = a
        for t in (a.starts_at, a.expires_at):
            heapq.heappush(self._boundaries, (t, a.id))
        self.advance(now)
        self._refresh(a.id)

    def charge(self, record: UsageRecord, windows: Mapping[str, Mapping[int, Window]]) -> None:
        """Count a newly stored usage record against its allocation."""
        if record.allocation is None:
            return
        pools = self._used.setdefault(record.allocation, {})
        pool = (record.site, record.gpu_type)
        pools[pool] = pools.get(pool, 0) + charged_seconds(record, windows)
        if record.allocation in self._allocs:
            self._refresh(record.allocation)

    def recharge(self, alloc_id: str, pool: Pool, delta_gpu_seconds: int) -> None:
        """Adjust charged usage, e.g. credit back uncharged preempted time when
        a segment ends preempted (its records were charged in full while it ran)."""
        pools = self._used.setdefault(alloc_id, {})
        pools[pool] = pools.get(pool, 0) + delta_gpu_seconds
        if alloc_id in self._allocs:
            self._refresh(alloc_id)

    def end_segment(self, segment: Segment, policy: ChargePolicy) -> int:
        """Credit back a segment's uncharged time once it has ended.

        Protocol: while a segment runs, its records are ``charge``d in full
        (its ending is not known yet); after its final tick, call this once.
        Its records tile ``[start, end)``, so the credit is exactly GPUs ×
        the uncharged window. Returns the GPU-seconds credited.
        """
        w = uncharged_window(segment, policy)
        if w is None or segment.allocation is None:
            return 0
        credit = segment.gpus * (w[1] - w[0])
        self.recharge(segment.allocation, (segment.site, segment.gpu_type), -credit)
        return credit

    def advance(self, now: Instant) -> None:
        """Move the clock: allocations whose start or expiry passed are re-counted."""
        if self._now is not None and now < self._now:
            raise AccountingError("clock-backwards", f"advance to {now} is before {self._now}")
        first = self._now is None
        self._now = now
        due = set()
        while self._boundaries and self._boundaries[0][0] <= now:
            due.add(heapq.heappop(self._boundaries)[1])
        for alloc_id in self._allocs if first else due:
            self._refresh(alloc_id)

    def used(self) -> Used:
        return {k: dict(v) for k, v in self._used.items()}


def choose_allocation(
    project: str, pool: Pool, allocations: Iterable[Allocation], used: Used, now: Instant
) -> Allocation | None:
    """The allocation a job starting now in ``pool`` charges (expiring first)."""
    best: Allocation | None = None
    for a in allocations:
        if a.project != project or not usable(a, now):
            continue
        if remaining(a, used.get(a.id, {})).get(pool, 0) <= 0:
            continue
        if best is None or (a.expires, a.id) < (best.expires, best.id):
            best = a
    return best


def exhausted_at(
    a: Allocation,
    records: Iterable[UsageRecord],
    windows: Mapping[str, Mapping[int, Window]],
) -> Instant | None:
    """When charged usage of ``a`` first reached its released total (``None``
    if it has not). Charged time is spread evenly over each record."""
    total = sum(a.released().values())
    cum = 0
    mine = sorted((r for r in records if r.allocation == a.id), key=lambda r: (r.start, r.end))
    for r in mine:
        c = charged_seconds(r, windows)
        if c > 0 and cum + c >= total:
            dur = r.end - r.start
            need = total - cum
            return r.start + -(-need * dur // c)
        cum += c
    return None


@dataclass(frozen=True, slots=True)
class WaitReason:
    allocation: str | None
    why: Phrase
    """As a phrase (``masnaa.domain.reasons``); ``message`` in English."""

    @property
    def message(self) -> str:
        return str(self.why)

    @property
    def exhausted(self) -> bool:
        return self.why.key in ("alloc-exhausted", "alloc-exhausted-on")


def wait_reason(
    project: str,
    allocations: Iterable[Allocation],
    used: Used,
    now: Instant,
    exhausted: Mapping[str, Instant] | None = None,
) -> WaitReason | None:
    """Why a job of ``project`` cannot charge an allocation now, or ``None``
    if it can. ``exhausted`` maps allocation id → ``exhausted_at``."""
    mine = sorted((a for a in allocations if a.project == project), key=lambda a: a.expires)
    live = [a for a in mine if usable(a, now)]
    for a in live:
        if any(v > 0 for v in remaining(a, used.get(a.id, {})).values()):
            return None
    if live:
        a = live[-1]
        when = (exhausted or {}).get(a.id)
        if when is None:
            return WaitReason(a.id, Phrase("alloc-exhausted", {"allocation": a.id}))
        return WaitReason(
            a.id, Phrase("alloc-exhausted-on", {"allocation": a.id, "day": str(day_of(when))})
        )
    future = [a for a in mine if a.state in LIVE and now < a.starts_at]
    if future:
        a = future[0]
        return WaitReason(a.id, Phrase("alloc-not-started", {"allocation": a.id,
                                                             "day": str(a.start)}))
    ended = [
        a for a in mine if a.state is State.EXPIRED or (a.state in LIVE and now >= a.expires_at)
    ]
    if ended:
        a = ended[-1]
        return WaitReason(a.id, Phrase("alloc-expired", {"allocation": a.id,
                                                         "day": str(a.expires)}))
    pending = [a for a in mine if a.state in (State.REQUESTED, State.IN_REVIEW, State.APPROVED)]
    if pending:
        a = pending[0]
        # One phrase per state, so that the state is a word of the reader's language.
        return WaitReason(a.id, Phrase(f"alloc-{a.state}", {"allocation": a.id}))
    return WaitReason(None, Phrase("no-allocation", {"project": project}))


@dataclass(frozen=True, slots=True)
class BurnDownPoint:
    day: date
    used_gpu_seconds: int
    """Charged usage up to the end of ``day`` (cumulative)."""
    remaining_gpu_seconds: int
    """Released minus used at the end of ``day`` (today's release)."""


def burn_down(
    a: Allocation,
    records: Iterable[UsageRecord],
    windows: Mapping[str, Mapping[int, Window]],
    now: Instant,
) -> list[BurnDownPoint]:
    """Day by day from the allocation's start to ``now`` (or its expiry): the
    series ``masnaa usage`` draws against the balance. Charged time of a record
    is spread evenly over it, so records crossing midnight split fairly."""
    first = a.starts_at
    last = min(now, a.expires_at)
    if last <= first:
        return []
    ndays = -(-(last - first) // DAY)
    per_day = [0] * ndays
    for r in records:
        if r.allocation != a.id:
            continue
        c = charged_seconds(r, windows)
        dur = r.end - r.start
        if c == 0 or dur == 0:
            continue
        s, e = max(r.start, first), min(r.end, last)
        t = s
        while t < e:
            d = (t - first) // DAY
            nxt = min(e, first + (d + 1) * DAY)
            per_day[d] += c * (nxt - t) // dur
            t = nxt
    total = sum(a.released().values())
    out, cum = [], 0
    for d, used in enumerate(per_day):
        cum += used
        out.append(BurnDownPoint(day_of(first + d * DAY), cum, total - cum))
    return out
