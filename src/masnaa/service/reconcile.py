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
| exited, cancelled outside (an administrator's ``scancel``) | — | cancelled | ``cancelled`` |
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

from masnaa.domain.reasons import Phrase, Reason
from masnaa.executors.base import Observed
from masnaa.store import models as m
from masnaa.store.events import transition


@dataclass(frozen=True, slots=True)
class Settlement:
    state: m.JobState
    code: str
    reason: Reason

    @property
    def requeued(self) -> bool:
        return self.state is m.JobState.PENDING


_STATUS = ("exit-code-signal", "exit-code", "signal", "no-exit-code")
"""Keys of how a run ended, as a part of a longer reason ("stopped, exit code 143")."""
_EXITED = ("exited-signal", "exited", "ended-by-signal", "ended-no-code")
"""The same as a whole reason ("exited with code 3")."""


def _status(observed: Observed, keys: tuple[str, str, str, str] = _STATUS) -> Phrase:
    """How the run ended: its exit code and signal, as far as the executor saw them."""
    code, signal = observed.exit_code, observed.signal
    with_signal, plain, signal_only, neither = keys
    if code is not None:
        if signal:
            return Phrase(with_signal, {"code": code, "signal": signal})
        return Phrase(plain, {"code": code})
    return Phrase(signal_only, {"signal": signal}) if signal else Phrase(neither)


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
    queue_again = Phrase("back-in-queue")

    def again(code: str, why: Phrase) -> Settlement:
        if attempt >= max_attempts:
            return Settlement(failed, code, (why, Phrase("most-runs", {"runs": attempt})))
        return Settlement(pending, code, (why, Phrase("requeued-for-run", {"run": attempt + 1})))

    if observed.state == "lost":
        lost = (
            Phrase("run-lost", {"run": attempt, "detail": observed.message})
            if observed.message
            else Phrase("run-lost-supervisor", {"run": attempt})
        )
        if cancel_requested:
            return Settlement(m.JobState.CANCELLED, "cancelled", (Phrase("cancelled"), lost))
        if preempting:
            return Settlement(pending, "preempted", (Phrase("preempted"), lost, queue_again))
        if attempt >= max_attempts:
            return Settlement(failed, "lost", (lost, Phrase("most-runs", {"runs": attempt})))
        return again("requeued", lost)
    status = _status(observed)
    if observed.reason == "time-limit":
        return Settlement(failed, "time-limit", (Phrase("time-limit", {"status": status}),))
    if observed.reason == "stopped":
        stopped = Phrase("stopped", {"status": status})
        if cancel_requested:
            return Settlement(m.JobState.CANCELLED, "cancelled", (Phrase("cancelled"), stopped))
        if preempting:
            return Settlement(pending, "preempted", (Phrase("preempted"), stopped, queue_again))
        return again("requeued", Phrase("stopped-outside", {"status": status}))
    if observed.reason == "cancelled-outside":  # the site's administrator: it sticks
        return Settlement(m.JobState.CANCELLED, "cancelled", (
            Phrase("cancelled-outside", {"detail": observed.stop_reason or "outside Masnaa"}),
            Phrase("stopped", {"status": status}),
        ))
    if observed.reason == "launch-failed":
        return Settlement(failed, "launch-failed", (
            Phrase("launch-failed", {"detail": observed.message})
            if observed.message
            else Phrase("could-not-start", {"status": status}),
        ))
    ended = (_status(observed, _EXITED),)
    if observed.exit_code == 0:
        return Settlement(m.JobState.SUCCEEDED, "succeeded", ended)
    return Settlement(failed, "exit-code", ended)


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
