"""Metering: exact, idempotent usage records from a job's run segments.

Terms:
- a **segment** is one attempt of a job holding ``gpus`` GPUs of one type at
  one site from ``start`` to ``end`` (``end=None`` while it runs), and how it
  ended (``SegmentEnd``). A preempted and requeued job has one segment per
  attempt.
- a **usage record** covers ``[start, end)`` of one segment. Its key is
  ``(job, attempt, start, end)``: the same interval always gives the same key.
- a **tick** meters a segment up to an instant: ``meter(segment,
  recorded_until, now)`` returns the record covering ``[recorded_until,
  min(end, now))``, where ``recorded_until`` is the end of the segment's last
  *durably stored* record (``None``: nothing stored yet, start at the segment
  start). Drivers tick at start, periodically while running and at the end.

Invariants (what makes usage exact):
- the records of a segment tile ``[start, end)`` with neither gap nor overlap:
  every tick starts where the last stored record ended, so a crash between
  ticks loses nothing (the next tick covers the hole) and re-emitting an
  interval after a restart yields the same key, which the store (here
  ``UsageJournal``) ignores — usage is never counted twice;
- a record never changes and is never deleted, even when its segment later
  turns out to be preempted: the preempted-time rule is applied in rating.

Preempted time (``ChargePolicy``): the issue's rule is "preempted time is not
charged". We read it as: *the work a preemption destroys is the operator's
cost*. Default ``LOST_WORK``: for a segment that ended ``PREEMPTED``, the time
from its last checkpoint (or its start, without one) to its end is not charged
— the work since the checkpoint is lost and must be redone, and the grace
window is spent for the operator's benefit. Alternatives an operator can pick:
``GRACE`` (only the window from the preemption notice to the release is free),
``WHOLE_SEGMENT`` (the whole preempted attempt is free) and ``NONE`` (charge
everything). ``max_uncharged_seconds`` caps the free time per preemption
(``None``: no cap). Every other ending (completed, failed, cancelled,
time-limit) is charged in full.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import Instant


class SegmentEnd(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"
    TIME_LIMIT = "time-limit"
    RUNNING = "running"


@dataclass(frozen=True, slots=True)
class Segment:
    job: str
    attempt: int
    start: Instant
    end: Instant | None
    gpus: int
    gpu_type: str
    site: str
    tenant: str
    project: str
    allocation: str | None = None
    ended: SegmentEnd = SegmentEnd.RUNNING
    preempt_notice: Instant | None = None
    """When the preemption was issued (the grace window starts)."""
    last_checkpoint: Instant | None = None
    """The job's latest checkpoint that finished before ``end``."""

    def __post_init__(self) -> None:
        where = f"job {self.job!r} attempt {self.attempt}"
        if self.gpus <= 0:
            raise AccountingError("bad-segment", f"{where}: gpus must be > 0, got {self.gpus}")
        if (self.end is None) != (self.ended is SegmentEnd.RUNNING):
            raise AccountingError(
                "bad-segment",
                f"{where}: a running segment has no end and an ended one has an end "
                f"(got end={self.end}, ended={self.ended})",
            )
        if self.end is not None and self.end < self.start:
            raise AccountingError(
                "bad-segment", f"{where}: end {self.end} is before start {self.start}"
            )

    @property
    def key(self) -> tuple[str, int]:
        return (self.job, self.attempt)


class UsageRecord(NamedTuple):
    """GPU-time of one segment over ``[start, end)``. A ``NamedTuple`` so that
    rating can stream millions of them cheaply."""

    job: str
    attempt: int
    start: Instant
    end: Instant
    gpus: int
    gpu_type: str
    site: str
    tenant: str
    project: str
    allocation: str | None

    @property
    def key(self) -> tuple[str, int, Instant, Instant]:
        return (self.job, self.attempt, self.start, self.end)

    @property
    def gpu_seconds(self) -> int:
        return self.gpus * (self.end - self.start)


def meter(segment: Segment, recorded_until: Instant | None, now: Instant) -> UsageRecord | None:
    """The record covering ``segment`` from ``recorded_until`` to ``now``
    (or to its end, if earlier). ``None`` when there is nothing new.

    Pure and deterministic: calling it twice with the same arguments gives the
    same record, so a re-emitted tick is a duplicate key, not new usage.
    """
    lo = segment.start if recorded_until is None else recorded_until
    if lo < segment.start:
        raise AccountingError(
            "bad-tick",
            f"job {segment.job!r} attempt {segment.attempt}: recorded_until {lo} is before "
            f"the segment start {segment.start}",
        )
    hi = now if segment.end is None else min(now, segment.end)
    if hi <= lo:
        return None
    return UsageRecord(
        segment.job,
        segment.attempt,
        lo,
        hi,
        segment.gpus,
        segment.gpu_type,
        segment.site,
        segment.tenant,
        segment.project,
        segment.allocation,
    )


class UsageJournal:
    """The rules of the usage table, in memory: what the store must enforce.

    ``add`` is idempotent on the key; a record overlapping a stored record of
    the same segment under another key is refused (``overlapping-usage``): it
    would count GPU-time twice. The service implements the same rules with a
    unique index on the key and a check that a new record starts at the
    segment's last stored end, in one transaction.
    """

    def __init__(self) -> None:
        self._keys: set[tuple[str, int, Instant, Instant]] = set()
        self._last_end: dict[tuple[str, int], Instant] = {}
        self._records: list[UsageRecord] = []

    def add(self, record: UsageRecord) -> bool:
        """Store ``record``; ``False`` if its key was already stored."""
        if record.key in self._keys:
            return False
        seg = (record.job, record.attempt)
        last = self._last_end.get(seg)
        if last is not None and record.start != last:
            raise AccountingError(
                "overlapping-usage" if record.start < last else "usage-gap",
                f"job {record.job!r} attempt {record.attempt}: new record starts at "
                f"{record.start} but the stored records end at {last}; meter from {last}",
            )
        self._keys.add(record.key)
        self._last_end[seg] = record.end
        self._records.append(record)
        return True

    def recorded_until(self, job: str, attempt: int) -> Instant | None:
        return self._last_end.get((job, attempt))

    @property
    def records(self) -> tuple[UsageRecord, ...]:
        return tuple(self._records)


# ------------------------------------------------------------ preempted time


class PreemptedCharge(StrEnum):
    LOST_WORK = "lost-work"
    GRACE = "grace"
    WHOLE_SEGMENT = "whole-segment"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ChargePolicy:
    preempted: PreemptedCharge = PreemptedCharge.LOST_WORK
    max_uncharged_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.max_uncharged_seconds is not None and self.max_uncharged_seconds < 0:
            raise AccountingError(
                "bad-charge-policy",
                f"max_uncharged_seconds must be ≥ 0 or None, got {self.max_uncharged_seconds}",
            )


Window = tuple[Instant, Instant]


def uncharged_window(segment: Segment, policy: ChargePolicy) -> Window | None:
    """The part ``[lo, hi)`` of ``segment`` that is not charged, or ``None``."""
    if segment.ended is not SegmentEnd.PREEMPTED or segment.end is None:
        return None
    end = segment.end
    rule = policy.preempted
    if rule is PreemptedCharge.NONE:
        return None
    if rule is PreemptedCharge.WHOLE_SEGMENT:
        lo = segment.start
    elif rule is PreemptedCharge.GRACE:
        lo = end if segment.preempt_notice is None else segment.preempt_notice
    else:
        lo = segment.start if segment.last_checkpoint is None else segment.last_checkpoint
    lo = min(max(lo, segment.start), end)
    if policy.max_uncharged_seconds is not None:
        lo = max(lo, end - policy.max_uncharged_seconds)
    return None if lo >= end else (lo, end)


def uncharged_windows(
    segments: Iterable[Segment], policy: ChargePolicy
) -> dict[str, dict[int, Window]]:
    """``job → attempt → window`` for every segment with uncharged time
    (nested by job so rating looks up a string, not a tuple, per record)."""
    out: dict[str, dict[int, Window]] = {}
    for s in segments:
        w = uncharged_window(s, policy)
        if w is not None:
            out.setdefault(s.job, {})[s.attempt] = w
    return out


def charged_seconds(record: UsageRecord, windows: Mapping[str, Mapping[int, Window]]) -> int:
    """GPU-seconds of ``record`` that are charged (record minus uncharged overlap)."""
    held = record.end - record.start
    w = windows.get(record.job, {}).get(record.attempt)
    if w is not None:
        held -= max(0, min(record.end, w[1]) - max(record.start, w[0]))
    return record.gpus * held
