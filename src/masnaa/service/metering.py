"""Metering and balances in the control loop: run segments, usage records, the ``BalanceBook``.

The loop owns one ``Meter``. Its hooks, and why each is crash-safe:

1. **Start** (``on_start``, inside the transaction that marks a job running):
   the run's segment is inserted with the allocation it charges
   (``choose_allocation``: the usable one with time left in the pool that
   expires first; with none, the usable one expiring first that grants the
   pool, or else the usable one expiring first, takes the overdraft; with no
   usable allocation, none). The segment exists iff the job was durably
   marked running.
2. **End** (``on_end``, inside the transaction that settles the run, before
   ``write_settlement`` clears the run's columns of a requeued job): the
   segment gets its end (the run's end, truncated to the second) and how it
   ended (completed, failed, cancelled, preempted, time-limit).
3. **Tick** (``tick``: every ``interval`` seconds of loop time, and in the
   pass after any start or end): for every segment not yet fully metered,
   ``recorded_until`` is the end of its last *stored* record, ``meter`` gives
   the next record, and it is inserted ``ON CONFLICT DO NOTHING`` on the key
   (job, attempt, start, end). An ended segment whose records reach its end
   is marked ``metered`` in the same transaction. So a crash anywhere loses
   nothing (the next tick starts where the stored records end) and counts
   nothing twice (records tile the segment; a re-emitted one is a duplicate
   key). Records are never updated or deleted, with one exception: **the
   true end learned late**. A run's segment is metered up to ``now`` while
   it is open, but its executor may not have been asked for a while (a Slurm
   controller down: the site's runs are not polled) and the run may have
   ended long before Masnaa learns it. When an ended segment's records reach
   past its end, the tick that meters it trims them to the end (a record
   wholly past it is deleted, the one across it is cut), gives the excess
   back to the balance, and marks the segment metered, in one transaction:
   the records then agree with the segment (``masnaa usage``) again. A crash
   before the commit leaves the overshoot for the next tick to trim.
4. **Balances**: the book is rebuilt from the store at start (records summed
   in SQL, preempted credit of metered segments given back) and then follows
   the commits of this process: ``charge`` per inserted record (in full
   while a run lasts), the preempted-time credit once a segment is fully
   metered, ``put`` for every allocation whose ``seq`` moved (API commands
   are seen in the next pass). ``balances`` is ``Snapshot.balances``: per
   project and pool, so a job starts only where its project has time left.
5. **Wait messages**: for a job held with ``allocation-exhausted``, the loop
   writes ``wait_reason``'s phrase, naming the allocation and the day it ran
   out (``exhausted_at``), e.g. "allocation alloc-1a2b exhausted on
   2026-11-20; request a supplement".

Rounding: segment start and end are the run's start and end truncated to
whole seconds, so a run's GPU-seconds are ``gpus × (⌊end⌋ − ⌊start⌋)``,
within one second per run of its recorded float run time.

Prometheus (on the process's registry): ``masnaa_gpu_hours_charged_total``
{tenant_kind, site} grows with every stored record (held GPU-time, charged
in full while it runs); ``masnaa_gpu_hours_credited_total`` {tenant_kind,
site} grows by the preempted time given back when a preempted run is
settled, and by usage taken back past a run's true end (hook 3). Net
charged GPU-hours = charged − credited.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from masnaa.accounting.allocation import LIVE, Allocation, Pool
from masnaa.accounting.allocations import settle
from masnaa.accounting.balance import (
    BalanceBook,
    Used,
    choose_allocation,
    exhausted_at,
    usable,
    wait_reason,
)
from masnaa.accounting.metering import (
    ChargePolicy,
    Segment,
    SegmentEnd,
    UsageRecord,
    meter,
    uncharged_window,
)
from masnaa.domain.reasons import Phrase
from masnaa.service import accounting as acct
from masnaa.service.tenancy import ServiceError
from masnaa.store import accounting as t
from masnaa.store import models as m

log = logging.getLogger(__name__)

ENDINGS: Mapping[str, SegmentEnd] = {
    "succeeded": SegmentEnd.COMPLETED,
    "time-limit": SegmentEnd.TIME_LIMIT,
    "cancelled": SegmentEnd.CANCELLED,
    "preempted": SegmentEnd.PREEMPTED,
}
"""Settlement code → how the segment ended; anything else is ``failed`` (charged in full)."""

U = t.UsageRecordRow
RS = t.RunSegmentRow


def _insert_record(s: Session, r: UsageRecord) -> bool:
    """Insert ``r`` unless its key is stored; True if it was new."""
    values = {
        "job_id": r.job,
        "attempt": r.attempt,
        "start": r.start,
        "end": r.end,
        "gpus": r.gpus,
        "gpu_type": r.gpu_type,
        "site": r.site,
        "tenant": r.tenant,
        "project": r.project,
        "allocation_id": r.allocation,
    }
    dialect = s.get_bind().dialect.name
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(U)
    # RETURNING says whether a row went in (rowcount is not reliable for ON CONFLICT on
    # every driver).
    stmt = ins.values(**values).on_conflict_do_nothing().returning(U.job_id)
    return s.execute(stmt).first() is not None


def _trim_records(s: Session, seg: Segment, end: int) -> int:
    """Cut the segment's stored records at ``end``; the GPU-seconds removed."""
    past = s.scalars(
        select(U).where(U.job_id == seg.job, U.attempt == seg.attempt, U.end > end)
    ).all()
    excess = 0
    for r in past:
        excess += r.gpus * (r.end - max(r.start, end))
        if r.start >= end:
            s.delete(r)
        else:
            r.end = end  # part of the key: the cut record is the one a tick to ``end`` makes
    s.flush()
    return excess


class Meter:
    """The loop's metering and balances (see the module docstring)."""

    def __init__(
        self,
        read: sessionmaker[Session],
        write: sessionmaker[Session],
        *,
        interval: float = 60.0,
        policy: ChargePolicy | None = None,
        metrics: Any = None,
    ) -> None:
        self.read = read
        self.write = write
        self.interval = interval
        self.policy = policy or ChargePolicy()
        self.metrics = metrics
        self.book = BalanceBook(())
        self.allocs: dict[str, Allocation] = {}
        self.seqs: dict[str, tuple[int, str]] = {}
        """allocation id → (seq, tenant) of the stored row."""
        self.by_project: dict[str, list[str]] = {}
        self.used: Used = {}
        self.kinds: dict[str, str] = {}
        self._probe: tuple[Any, ...] | None = None
        self._last_tick = -math.inf
        self._now = 0
        self._wait_reasons: dict[str, Phrase | None] = {}
        self.dirty = False

    @property
    def balances(self) -> Mapping[str, Mapping[Pool, int]]:
        return self.book.balances

    # -- loading ---------------------------------------------------------------------------
    @staticmethod
    def _read_probe(s: Session) -> tuple[Any, ...]:
        terms = s.get(t.AccountingSetting, acct.TERMS_REV_KEY)
        return (
            s.scalar(select(func.max(t.AllocationRow.seq))),
            s.scalar(select(func.max(m.Project.id))),
            s.scalar(select(func.max(m.Tenant.id))),
            None if terms is None else terms.value.get("rev"),
        )

    def _clock(self, now: float) -> int:
        self._now = max(self._now, int(now))
        return self._now

    def load(self, s: Session, now: float) -> None:
        """Rebuild the book from the store."""
        n = self._clock(now)
        self._probe = self._read_probe(s)
        self.kinds = acct.tenant_kinds(s)
        self.book = BalanceBook(acct.enforced_projects(s))
        self.allocs, self.seqs, self.by_project, self.used = {}, {}, {}, {}
        self._wait_reasons.clear()
        for row in s.scalars(select(t.AllocationRow)):
            a = acct.from_doc(row.doc)
            self.allocs[a.id] = a
            self.seqs[a.id] = (row.seq, row.tenant)
            self.by_project.setdefault(a.project, []).append(a.id)
        held = s.execute(
            select(U.allocation_id, U.site, U.gpu_type, func.sum(U.gpus * (U.end - U.start)))
            .where(U.allocation_id.is_not(None))
            .group_by(U.allocation_id, U.site, U.gpu_type)
        )
        for alloc, site, gpu, seconds in held:
            self._recharge(str(alloc), (site, gpu), int(seconds))
        done = s.scalars(
            select(RS).where(RS.metered.is_(True), RS.ended == SegmentEnd.PREEMPTED.value)
        )
        for seg in done:
            self._credit(acct.segment_of(seg))
        for a in self.allocs.values():
            self.book.put(a, n)

    def sync(self, now: float) -> None:
        """Follow allocation writes (by ``seq``); rebuild if projects or terms changed."""
        with self.read() as s:
            probe = self._read_probe(s)
            if probe == self._probe:
                self.book.advance(self._clock(now))
                return
            if self._probe is None or probe[1:] != self._probe[1:]:
                self.load(s, now)
                return
            rows = list(
                s.scalars(
                    select(t.AllocationRow).where(t.AllocationRow.seq > (self._probe[0] or 0))
                )
            )
            known = {tenant for _, tenant in self.seqs.values()}
            if any(row.tenant not in known for row in rows):  # may start enforcement
                self.load(s, now)
                return
            self._probe = probe
        n = self._clock(now)
        for row in rows:
            a = acct.from_doc(row.doc)
            if a.id not in self.allocs:
                self.by_project.setdefault(a.project, []).append(a.id)
            self.allocs[a.id] = a
            self.seqs[a.id] = (row.seq, row.tenant)
            self.book.put(a, n)
            self._wait_reasons.pop(a.project, None)
        self.book.advance(n)

    # -- book keeping ----------------------------------------------------------------------
    def _recharge(self, alloc: str, pool: Pool, delta: int) -> None:
        pools = self.used.setdefault(alloc, {})
        pools[pool] = pools.get(pool, 0) + delta
        self.book.recharge(alloc, pool, delta)
        a = self.allocs.get(alloc)
        if a is not None:
            self._wait_reasons.pop(a.project, None)

    def _credit(self, seg: Segment) -> int:
        w = uncharged_window(seg, self.policy)
        if w is None or seg.allocation is None:
            return 0
        credit = seg.gpus * (w[1] - w[0])
        self._recharge(seg.allocation, (seg.site, seg.gpu_type), -credit)
        return credit

    # -- hooks (in the loop's transactions) --------------------------------------------------
    def on_start(self, s: Session, row: m.Job) -> None:
        """Insert the segment of the run ``row`` just started (see hook 1)."""
        if row.started_at is None or s.get(RS, (row.id, row.attempt)) is not None:
            return
        tenant = s.get(m.Tenant, row.tenant_id)
        project = s.get(m.Project, row.project_id)
        assert tenant is not None and project is not None
        qualified = f"{tenant.name}/{project.name}"
        start = int(row.started_at)
        pool = (row.site or "", row.gpu_type or "")
        mine = [self.allocs[i] for i in self.by_project.get(qualified, ())]
        chosen = choose_allocation(qualified, pool, mine, self.used, start)
        if chosen is None:
            # The overdraft goes to an allocation that grants this pool, if one does.
            live = sorted(
                (a for a in mine if usable(a, start)),
                key=lambda a: (pool not in a.released(), a.expires, a.id),
            )
            chosen = live[0] if live else None
        s.add(
            RS(
                job_id=row.id,
                attempt=row.attempt,
                start=start,
                end=None,
                gpus=row.tasks * row.gpus_per_task,
                gpu_type=pool[1],
                site=pool[0],
                tenant=tenant.name,
                project=qualified,
                allocation_id=chosen.id if chosen is not None else None,
                ended=SegmentEnd.RUNNING.value,
                metered=False,
            )
        )
        s.flush()
        self.dirty = True

    def on_end(self, s: Session, row: m.Job, code: str, ended_at: float) -> None:
        """Close the segment of the run ``row`` that ended at ``ended_at`` (see hook 2)."""
        seg = s.get(RS, (row.id, row.attempt))
        if seg is None or seg.end is not None:
            return
        seg.end = max(seg.start, int(ended_at))
        seg.ended = ENDINGS.get(code, SegmentEnd.FAILED).value
        self.dirty = True

    # -- the tick --------------------------------------------------------------------------
    def tick(self, now: float, *, force: bool = False) -> int:
        """Meter every open or just-ended segment; returns the records stored."""
        periodic = now - self._last_tick >= self.interval
        if not (force or self.dirty or periodic):
            return 0
        self.dirty = False
        if periodic:
            self._last_tick = now
            self._wait_reasons.clear()  # reasons that depend on the date (starts on, expired on)
        n = self._clock(now)
        inserted: list[UsageRecord] = []
        finished: list[Segment] = []
        refunds: list[tuple[Segment, int]] = []
        with self.write() as s, s.begin():
            rows = list(s.scalars(select(RS).where(RS.metered.is_(False))))
            until: dict[tuple[str, int], int] = {}
            if rows:
                found = s.execute(
                    select(U.job_id, U.attempt, func.max(U.end))
                    .join(RS, (RS.job_id == U.job_id) & (RS.attempt == U.attempt))
                    .where(RS.metered.is_(False))
                    .group_by(U.job_id, U.attempt)
                )
                until = {(j, a): int(e) for j, a, e in found}
            for row in rows:
                seg = acct.segment_of(row)
                recorded = until.get((row.job_id, row.attempt))
                if seg.end is not None and recorded is not None and recorded > seg.end:
                    refunds.append((seg, _trim_records(s, seg, seg.end)))
                    recorded = seg.end
                record = meter(seg, recorded, n if seg.end is None else max(n, seg.end))
                if record is not None:
                    if _insert_record(s, record):
                        inserted.append(record)
                    recorded = record.end
                if seg.end is not None and (recorded or seg.start) >= seg.end:
                    row.metered = True
                    finished.append(seg)
        for r in inserted:
            if r.allocation is not None:
                self._recharge(r.allocation, (r.site, r.gpu_type), r.gpu_seconds)
            if self.metrics is not None:
                self.metrics.gpu_hours_charged.labels(
                    self.kinds.get(r.tenant, "unknown"), r.site
                ).inc(r.gpu_seconds / 3600)
        for seg, excess in refunds:  # charged past the run's true end (hook 3)
            if seg.allocation is not None and excess:
                self._recharge(seg.allocation, (seg.site, seg.gpu_type), -excess)
            if excess and self.metrics is not None:  # a counter only grows: net it out
                self.metrics.gpu_hours_credited.labels(
                    self.kinds.get(seg.tenant, "unknown"), seg.site
                ).inc(excess / 3600)
            log.info("job %s run %d: usage past its end (%d GPU-seconds) taken back",
                     seg.job, seg.attempt, excess)  # fmt: skip
        for seg in finished:
            credit = self._credit(seg)
            if credit and self.metrics is not None:
                self.metrics.gpu_hours_credited.labels(
                    self.kinds.get(seg.tenant, "unknown"), seg.site
                ).inc(credit / 3600)
        if periodic:
            self._settle(n)
        return len(inserted)

    def _settle(self, n: int) -> None:
        """Store allocation states that time or usage changed (activation, exhaustion, expiry)."""
        changed = []
        for a in self.allocs.values():
            if a.state not in LIVE:
                continue
            new = settle(a, n, self.used.get(a.id, {}))
            if new is not a:
                changed.append(new)
        for new in changed:
            seq, tenant = self.seqs[new.id]
            try:
                with self.write() as s, s.begin():
                    acct.save(s, new, tenant=tenant, now=n, old_seq=seq)
            except ServiceError:  # changed meanwhile by a command: the next tick settles it
                continue
        # ``sync`` in the next pass loads the rows written here (their seq moved).

    # -- wait messages ---------------------------------------------------------------------
    def wait_reason(self, project: str, now: float) -> Phrase | None:
        """Why a job of ``project`` is held for its allocation (cached until that changes)."""
        if project in self._wait_reasons:
            return self._wait_reasons[project]
        n = self._clock(now)
        mine = [self.allocs[i] for i in self.by_project.get(project, ())]
        reason = wait_reason(project, mine, self.used, n)
        if (
            reason is not None
            and reason.allocation in self.allocs
            and reason.exhausted
        ):
            a = self.allocs[reason.allocation]
            with self.read() as s:
                records = acct.load_records(s, where=[U.allocation_id == a.id])
                when = exhausted_at(a, records, acct.windows_for(s, records, self.policy))
            if when is not None:
                reason = wait_reason(project, mine, self.used, n, {a.id: when})
        why = reason.why if reason is not None else None
        self._wait_reasons[project] = why
        return why
