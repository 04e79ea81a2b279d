"""What an ended (or lost) run means for its job, and writing it: ``settle``.

``settle`` is a pure table from (the job's flags, what the executor
observed) to the job's next state; ``write_settlement`` applies it to a row
inside the caller's transaction, with its event. The rules, first match wins:

| observed | job flags | next state | event code |
|---|---|---|---|
| lost | cancel requested | cancelled | ``cancelled`` |
| lost | being preempted | pending | ``preempted`` |
| lost | attempts ≥ max | failed | ``lost`` |
| lost | — | pending | ``requeued`` |
| exited, time limit | — | failed | ``time-limit`` |
| exited, stopped | cancel requested | cancelled | ``cancelled`` |
| exited, stopped | being preempted | pending | ``preempted`` |
| exited, stopped | neither (signalled from outside) | pending (or failed at max) | ``requeued`` |
| exited, launch failed | — | failed | ``launch-failed`` |
| exited 0 | — | succeeded | ``succeeded`` |
| exited ≠ 0 | — | failed | ``exit-code`` |

A job that exits by itself while a cancel or preemption is pending keeps
its own outcome: it finished. Going back to ``pending`` adds the run's
GPU-seconds to ``attained_service`` and clears the placement; the attempt
number stays (it counts runs), and the next admission takes ``attempt + 1``,
so the next run has a new identity for the executor and can never be
confused with this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from masnaa.executors.base import Observed
from masnaa.store import models as m
from masnaa.store.events import transition


@dataclass(frozen=True, slots=True)
class Settlement:
    state: m.JobState
    code: str
    reason: str

    @property
    def requeued(self) -> bool:
        return self.state is m.JobState.PENDING


def settle(
    observed: Observed,
    *,
    attempt: int,
    cancel_requested: bool,
    preempting: bool,
    max_attempts: int,
) -> Settlement:
    """The next state of a job whose run ``observed`` ended (see the module table)."""
    if not observed.done:
        raise ValueError(f"settle needs an ended run, got {observed.state}")
    pending, failed = m.JobState.PENDING, m.JobState.FAILED

    def again(code: str, why: str) -> Settlement:
        if attempt >= max_attempts:
            return Settlement(failed, code, f"{why}; it ran {attempt} times, the most allowed")
        return Settlement(pending, code, f"{why}; requeued for run {attempt + 1}")

    if observed.state == "lost":
        why = f"run {attempt} was lost: {observed.message or 'its supervisor is gone'}"
        if cancel_requested:
            return Settlement(m.JobState.CANCELLED, "cancelled", f"cancelled ({why})")
        if preempting:
            return Settlement(pending, "preempted", f"preempted ({why}); back in the queue")
        if attempt >= max_attempts:
            return Settlement(failed, "lost", f"{why}; it ran {attempt} times, the most allowed")
        return again("requeued", why)
    code = observed.exit_code
    status = f"exit code {code}" if code is not None else "before it started"
    if observed.signal:
        status += f" (signal {observed.signal})"
    if observed.reason == "time-limit":
        return Settlement(failed, "time-limit", f"time-limit: stopped at its time limit, {status}")
    if observed.reason == "stopped":
        if cancel_requested:
            return Settlement(m.JobState.CANCELLED, "cancelled", f"cancelled: stopped, {status}")
        if preempting:
            return Settlement(
                pending, "preempted", f"preempted: stopped, {status}; back in the queue"
            )
        return again("requeued", f"stopped from outside Masnaa, {status}")
    if observed.reason == "launch-failed":
        return Settlement(failed, "launch-failed", observed.message or f"could not start, {status}")
    if code == 0:
        return Settlement(m.JobState.SUCCEEDED, "succeeded", "exited with code 0")
    return Settlement(failed, "exit-code", f"exited with {status.removeprefix('exit ')}")


def write_settlement(
    session: Session, row: m.Job, settlement: Settlement, observed: Observed, *, now: float
) -> None:
    """Apply ``settlement`` to ``row`` (in the caller's transaction)."""
    started = row.started_at if row.started_at is not None else observed.started_at
    ended = observed.ended_at if observed.ended_at is not None else now
    transition(
        session, row, settlement.state, at=now, code=settlement.code, reason=settlement.reason
    )
    if settlement.requeued:
        if started is not None:
            row.attained_service += max(0.0, ended - started) * row.tasks * row.gpus_per_task
        row.placement = None
        row.site = None
        row.gpu_type = None
        row.started_at = None
        row.ended_at = None
        row.exit_code = None
        row.preempt_deadline = None
        row.executor_handle = None
        return
    row.started_at = started
    row.ended_at = ended
    row.exit_code = observed.exit_code
    row.preempt_deadline = None
