"""Writing what the executors reported in one pass of the control loop: ``write_runs``.

The loop's drive phase asks the executors to launch admitted runs and polls
the rest; this module commits the answers, in one transaction and with the
job rows locked in id order (``apply.lock_rows``):

- a launch that took: ``admitted`` → ``running`` (started now, or, on an engine
  that queues, from the start it reports later: ``sites.record_starts``);
- a launch the executor refused for good: ``admitted`` → ``failed``
  (``launch-rejected``);
- a run that ended or was lost: what ``reconcile.settle`` says, written by
  ``reconcile.write_settlement``; a run cancelled before it was ever launched
  becomes ``cancelled``.

A report about an attempt the row has moved past (another attempt, or a state
written meanwhile by a cancel or a drain) is ignored: the store is the truth,
and the next pass polls the run the row names. Metering hears of every start
and end inside the same transaction (``metering.Meter``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from masnaa.domain.reasons import Phrase
from masnaa.executors.base import Observed
from masnaa.service import apply
from masnaa.service.metering import Meter
from masnaa.service.reconcile import settle, write_settlement
from masnaa.service.sites import record_starts
from masnaa.store import models as m
from masnaa.store.events import transition


@dataclass(slots=True)
class RunWrites:
    """What ``write_runs`` committed, for the loop's index and its pass report."""

    released: list[str] = field(default_factory=list)
    """Jobs whose GPUs the loop's index gives back (their run is over)."""
    requeued: list[str] = field(default_factory=list)
    """Jobs back in ``pending`` (lost, preempted, stopped from outside)."""
    transitions: list[tuple[str, str]] = field(default_factory=list)
    settled: int = 0


def write_runs(
    s: Session,
    *,
    now: float,
    launched: dict[str, int],
    rejected: dict[str, tuple[int, str]],
    ended: dict[str, tuple[int, Observed]],
    meter: Meter,
    queues: Callable[[str | None], bool],
    max_attempts: int,
) -> RunWrites:
    """Commit the pass's launches, refusals and ends in ``s``'s transaction.

    ``launched``: job → the attempt whose launch took; ``rejected``: job →
    (attempt, why it can never run); ``ended``: job → (attempt, what the
    executor observed). ``queues(site)``: whether the site's engine may hold a
    launched run pending (Slurm), so that its start is written when it begins.
    """
    out = RunWrites()
    rows = apply.lock_rows(s, {*launched, *rejected, *ended})
    for job_id, attempt in launched.items():
        row = rows.get(job_id)
        if row is None or row.state != m.JobState.ADMITTED.value or row.attempt != attempt:
            continue
        transition(s, row, m.JobState.RUNNING, at=now, code="started",
                   reason=(Phrase("started", {"run": attempt}),))
        row.wait_code = row.wait_message = None  # a launch retried until it took
        row.wait_phrases = []
        # A queuing engine holds GPUs, and is charged, only from the start it reports.
        row.started_at = None if queues(row.site) else now
        meter.on_start(s, row)
        out.transitions.append(("admitted", "running"))
    for job_id, (attempt, message) in rejected.items():
        row = rows.get(job_id)
        if row is None or row.state != m.JobState.ADMITTED.value or row.attempt != attempt:
            continue
        transition(s, row, m.JobState.FAILED, at=now, code="launch-rejected",
                   reason=(Phrase("launch-rejected", {"detail": message}),))
        row.ended_at = now
        out.released.append(job_id)
        out.transitions.append(("admitted", "failed"))
    for job_id, (attempt, seen) in ended.items():
        row = rows.get(job_id)
        if (
            row is None
            or row.state not in (m.JobState.ADMITTED.value, m.JobState.RUNNING.value)
            or row.attempt != attempt
        ):
            continue
        before = row.state
        if seen.state == "absent":  # cancelled before it was ever launched
            meter.on_end(s, row, "cancelled", now)
            transition(s, row, m.JobState.CANCELLED, at=now, code="cancelled",
                       reason=(Phrase("cancelled-before-start"),))
            row.ended_at = now
            out.transitions.append((before, "cancelled"))
            out.released.append(job_id)
            continue
        outcome = settle(
            seen,
            attempt=attempt,
            cancel_requested=row.cancel_requested,
            preempting=row.preempt_deadline is not None,
            max_attempts=max_attempts,
        )
        ended_at = seen.ended_at if seen.ended_at is not None else now
        if row.started_at is None and seen.started_at is not None:
            record_starts(s, {job_id: (attempt, seen)}, meter.on_start)
        meter.on_end(s, row, outcome.code, ended_at)
        write_settlement(s, row, outcome, seen, now=now)
        out.transitions.append((before, outcome.state.value))
        out.settled += 1
        out.released.append(job_id)
        if outcome.requeued:
            out.requeued.append(job_id)
    return out


def note_launch_retries(s: Session, retrying: dict[str, tuple[int, str]]) -> None:
    """Say why admitted runs have not started: their launch failed on the machine (a
    directory it cannot write, a full disk) and is tried again each pass."""
    for job_id, (attempt, why) in retrying.items():
        row = s.get(m.Job, job_id)
        if row is None or row.state != m.JobState.ADMITTED.value or row.attempt != attempt:
            continue
        # The machine's own words (an OS error): no phrase, like a site's pending reason.
        row.wait_code, row.wait_message, row.wait_phrases = "launch-retry", why, []
