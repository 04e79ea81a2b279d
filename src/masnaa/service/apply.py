"""Writing one ``Decision`` to the store, each part in its own short transaction.

Every function here re-reads the rows it changes inside the write
transaction (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
already serialises writers) and acts only if the row is still in the state
the decision assumed: a job the API cancelled a moment ago is skipped, not
started. Each returns what it actually changed, so the caller updates its
in-memory state to match the store and nothing more. Nothing here touches
an executor; the control loop calls executors between transactions, so a
slow engine never holds the database's write lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from masnaa.domain import reasons
from masnaa.domain.reasons import Phrase, Reason
from masnaa.scheduler.decision import Preemption, Start, Wait
from masnaa.store import convert
from masnaa.store import models as m
from masnaa.store.events import transition

LogPaths = Callable[[str, str, int], tuple[str, str] | None]
"""(site, job id, attempt) → where its stdout and stderr will be, if the executor says."""


def lock_rows(session: Session, ids: Iterable[str]) -> dict[str, m.Job]:
    """The job rows ``ids``, locked for this transaction.

    Locked in id order, as every other writer (drains, cancels) does, so that two
    transactions locking overlapping sets cannot deadlock on PostgreSQL.
    """
    ids = list(ids)
    if not ids:
        return {}
    stmt = select(m.Job).where(m.Job.id.in_(ids)).order_by(m.Job.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return {row.id: row for row in session.scalars(stmt)}


def reject(session: Session, rejected: Mapping[str, Wait], *, now: float) -> list[str]:
    """Fail pending jobs that can never run as asked (e.g. too large)."""
    done = []
    for job_id, row in lock_rows(session, rejected).items():
        if row.state != m.JobState.PENDING.value:
            continue
        wait = rejected[job_id]
        transition(
            session, row, m.JobState.FAILED, at=now, code=wait.code.value,
            reason=(Phrase("cannot-run", {"why": wait.why}),),
        )
        row.ended_at = now
        row.wait_code, row.wait_message, row.estimated_start = wait.code.value, wait.message, None
        row.wait_phrases = reasons.to_json((wait.why,))
        done.append(job_id)
    return done


@dataclass(frozen=True, slots=True)
class Admitted:
    job_id: str
    attempt: int
    site: str


def admit(
    session: Session,
    starts: Iterable[Start],
    *,
    now: float,
    log_paths: LogPaths,
    why: Mapping[str, Phrase] | None = None,
) -> list[Admitted]:
    """``pending`` → ``admitted`` with placement and a new attempt number, before any launch.

    ``why``: job id → why the core chose its site (``Decision.site_choices``), added to
    the admission's reason: the job's history (``masnaa show JOB``) shows it.
    """
    starts = list(starts)
    rows = lock_rows(session, (s.job_id for s in starts))
    out = []
    for s in starts:
        row = rows.get(s.job_id)
        if row is None or row.state != m.JobState.PENDING.value or row.cancel_requested:
            continue
        row.attempt += 1
        row.placement = convert.placement_to_json(s.placement)
        row.site = s.site
        row.gpu_type = s.gpu_type
        row.started_at = None
        row.ended_at = None
        row.exit_code = None
        row.preempt_deadline = None
        row.wait_code = row.wait_message = None
        row.wait_phrases = []
        row.estimated_start = None
        row.executor_handle = f"{s.site}:{row.id}/{row.attempt}"
        paths = log_paths(s.site, row.id, row.attempt)
        if paths is not None:
            row.stdout_path, row.stderr_path = paths
        where = ", ".join(f"{p.node}[{','.join(map(str, p.gpus))}]" for p in s.placement.slices)
        said: list[Phrase] = [Phrase(
            "placed-by-backfill" if s.backfilled else "placed",
            {"run": row.attempt, "nodes": where, "gpu_type": s.gpu_type, "site": s.site},
        )]
        if s.borrowed_gpus:
            said.append(Phrase("borrowed", {"gpus": s.borrowed_gpus}))
        chose = why.get(s.job_id) if why is not None else None
        if chose is not None:
            said.append(chose)
        transition(session, row, m.JobState.ADMITTED, at=now, code="admitted", reason=tuple(said))
        out.append(Admitted(row.id, row.attempt, s.site))
    return out


def mark_running(session: Session, launched: Mapping[str, int], *, now: float) -> list[str]:
    """``admitted`` → ``running`` for the attempts the executor accepted."""
    done = []
    for job_id, row in lock_rows(session, launched).items():
        if row.state != m.JobState.ADMITTED.value or row.attempt != launched[job_id]:
            continue
        transition(
            session,
            row,
            m.JobState.RUNNING,
            at=now,
            code="started",
            reason=(Phrase("started", {"run": row.attempt}),),
        )
        row.started_at = now
        done.append(job_id)
    return done


@dataclass(frozen=True, slots=True)
class PreemptionIssued:
    job_id: str
    attempt: int
    site: str
    deadline: float
    grace: float


def request_preemptions(
    session: Session, preemptions: Iterable[Preemption], *, now: float
) -> list[PreemptionIssued]:
    """Record each victim's deadline (it keeps its state until its run ends)."""
    preemptions = list(preemptions)
    rows = lock_rows(session, (p.job_id for p in preemptions))
    out = []
    for p in preemptions:
        row = rows.get(p.job_id)
        if row is None or row.state not in (m.JobState.ADMITTED.value, m.JobState.RUNNING.value):
            continue
        if row.preempt_deadline is not None or row.cancel_requested:
            continue
        row.preempt_deadline = now + p.grace_seconds
        transition(
            session,
            row,
            row.state,
            at=now,
            code="preempting",
            reason=(*p.reason, Phrase("grace", {"seconds": p.grace_seconds})),
        )
        out.append(
            PreemptionIssued(
                row.id, row.attempt, row.site or "", row.preempt_deadline, p.grace_seconds
            )
        )
    return out


WaitRecord = tuple[str, Reason, float | None]
"""A pending job's wait code, why (its English text is the ``wait_message``), estimate."""


def record_waits(
    session: Session, waits: Mapping[str, WaitRecord], written: dict[str, WaitRecord]
) -> int:
    """Write each pending job's wait code, message and estimate where they changed.

    ``written`` is the caller's memory of what is in the store; estimates
    that moved by less than ``ESTIMATE_SLACK`` seconds are not rewritten.
    These columns belong to the loop alone, so a plain UPDATE (no version
    bump) cannot overwrite anyone's write.
    """
    changes = []
    for job_id, (code, why, estimate) in waits.items():
        before = written.get(job_id)
        if before is not None and before[0] == code and before[1] == why:
            old = before[2]
            if (old is None) == (estimate is None) and (
                estimate is None or old is None or abs(estimate - old) < ESTIMATE_SLACK
            ):
                continue
        changes.append({"k": job_id, "c": code, "msg": reasons.english(why),
                        "why": reasons.to_json(why), "e": estimate})
        written[job_id] = (code, why, estimate)
    if changes:
        table = m.Job.__table__
        session.execute(
            update(table)
            .where(table.c.id == bindparam("k"), table.c.state == m.JobState.PENDING.value)
            .values(
                wait_code=bindparam("c"),
                wait_message=bindparam("msg"),
                wait_phrases=bindparam("why"),
                estimated_start=bindparam("e"),
            ),
            changes,
        )
    return len(changes)


ESTIMATE_SLACK = 5.0
