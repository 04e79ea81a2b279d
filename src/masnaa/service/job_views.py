"""Jobs as users read them beyond their rows: the queue and where a job stands in
it, logs, and GPU-hours per project.

- Queue position (display only) is the order among pending jobs by priority
  value (high first), then submission time — the loop's real order also
  weighs fair share, which ``explain`` reports through the loop's wait code.
  It counts only the pending jobs the caller can see (their tenant's; every
  job for operators): a position among every tenant's jobs would tell anyone
  how much the other tenants queue, and the order across tenants is fair
  share's anyway, which this display order does not follow.
- Logs are read in chunks of at most ``MAX_LOG_CHUNK`` bytes, never cutting a
  UTF-8 sequence unless the job has ended and the file is read to its end.
- Usage counts earlier runs (``attained_service``) plus the current or last run,
  from the jobs table; the metered record is ``service.metering``'s.

Visibility is ``service.jobs``': another tenant's job is *not found*.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from masnaa.service.job_catalog import priority_values
from masnaa.service.jobs import get_job, visible
from masnaa.service.snapshot import submission_order
from masnaa.service.tenancy import Caller, ServiceError
from masnaa.store import models as m

MAX_LOG_CHUNK = 1024 * 1024


# --- explain and queue ---------------------------------------------------------


def pending_positions(session: Session, caller: Caller) -> dict[str, int]:
    """1-based display position of every pending job the caller can see (priority,
    then age), among those jobs only."""
    values = priority_values(session)
    rows = list(
        session.execute(
            visible(select(m.Job.id, m.Job.priority_class, m.Job.submitted_at), caller).where(
                m.Job.state == m.JobState.PENDING.value
            )
        )
    )
    first = submission_order(session, [(r[0], r[2]) for r in rows])  # a batch's order
    rows.sort(key=lambda r: (-values.get(r[1], 0), r[2], first.get(r[0], 0), r[0]))
    return {r[0]: i + 1 for i, r in enumerate(rows)}


@dataclass(frozen=True, slots=True)
class Explanation:
    job: m.Job
    position: int | None
    pending_total: int
    last_event: m.JobEvent | None


def explain(session: Session, caller: Caller, job_id: str) -> Explanation:
    job = get_job(session, caller, job_id)
    position = None
    total = 0
    if job.state == m.JobState.PENDING.value:
        positions = pending_positions(session, caller)
        position = positions.get(job.id)
        total = len(positions)
    last = session.scalars(
        select(m.JobEvent).where(m.JobEvent.job_id == job.id).order_by(m.JobEvent.id.desc())
    ).first()
    return Explanation(job, position, total, last)


@dataclass(slots=True)
class TenantUse:
    tenant: str
    share: float
    share_fraction: float
    """``share`` over the sum of every tenant's share."""
    gpus_in_use: dict[str, int]
    """GPU type → GPUs held by admitted or running jobs."""
    gpu_fraction_in_use: float
    """GPUs held over the factory's GPUs."""
    quota_nominal: dict[str, int]
    """GPU type → nominal quota summed over sites."""
    pending_jobs: int


@dataclass(slots=True)
class QueueView:
    jobs: list[m.Job]
    positions: dict[str, int]
    tenants: list[TenantUse]
    total_gpus: int


def queue(session: Session, caller: Caller, *, limit: int = 500) -> QueueView:
    active = [
        m.JobState.PENDING.value,
        m.JobState.ADMITTED.value,
        m.JobState.RUNNING.value,
    ]
    positions = pending_positions(session, caller)
    jobs = list(
        session.scalars(
            visible(select(m.Job).where(m.Job.state.in_(active)), caller)
            .order_by(m.Job.submitted_at, m.Job.id)
            .limit(max(1, min(limit, 5000)))
        )
    )
    jobs.sort(key=lambda j: (positions.get(j.id, 0), j.submitted_at))
    total_gpus = int(session.scalar(select(func.coalesce(func.sum(m.Node.gpu_count), 0))) or 0)
    all_tenants = list(session.scalars(select(m.Tenant).order_by(m.Tenant.name)))
    share_sum = sum(t.share for t in all_tenants) or 1.0
    in_use: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for tenant_id, gpu_type, tasks, gpt in session.execute(
        select(m.Job.tenant_id, m.Job.gpu_type, m.Job.tasks, m.Job.gpus_per_task).where(
            m.Job.state.in_(active[1:])
        )
    ):
        in_use[tenant_id][gpu_type or "?"] += tasks * gpt
    pending_count = dict(
        session.execute(
            select(m.Job.tenant_id, func.count())
            .where(m.Job.state == m.JobState.PENDING.value)
            .group_by(m.Job.tenant_id)
        ).all()
    )
    nominal: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for tenant_id, gpu_type, value in session.execute(
        select(m.Quota.tenant_id, m.GpuType.name, m.Quota.nominal).join(
            m.GpuType, m.Quota.gpu_type_id == m.GpuType.id
        )
    ):
        nominal[tenant_id][gpu_type] += value
    uses = []
    for t in all_tenants:
        if not caller.sees_tenant(t.id):
            continue
        held = dict(in_use.get(t.id, {}))
        uses.append(
            TenantUse(
                tenant=t.name,
                share=t.share,
                share_fraction=t.share / share_sum,
                gpus_in_use=held,
                gpu_fraction_in_use=sum(held.values()) / total_gpus if total_gpus else 0.0,
                quota_nominal=dict(nominal.get(t.id, {})),
                pending_jobs=int(pending_count.get(t.id, 0)),
            )
        )
    return QueueView(jobs, positions, uses, total_gpus)


# --- logs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogChunk:
    stream: str
    offset: int
    next_offset: int
    data: str
    size: int
    """Bytes in the file now."""
    complete: bool
    """Every byte of this run has been read and it writes no more: the run is an
    earlier one, or the job has ended. Follow ``runs`` to the next run, if any."""
    run: int = 0
    """The run read (``Job.attempt`` of that run; 0: the job has not run yet)."""
    runs: int = 0
    """How many runs the job has had so far."""


def _utf8_cut(data: bytes) -> int:
    """Length of ``data`` without a trailing incomplete UTF-8 sequence."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # continuation byte: keep looking for the lead byte
        if byte & 0xE0 == 0xC0:
            need = 2
        elif byte & 0xF0 == 0xE0:
            need = 3
        elif byte & 0xF8 == 0xF0:
            need = 4
        else:
            need = 1
        return len(data) - back if need > back else len(data)
    return len(data)


def read_log(
    session: Session,
    caller: Caller,
    job_id: str,
    *,
    stream: Literal["stdout", "stderr"] = "stdout",
    offset: int = 0,
    limit: int = 64 * 1024,
    run: int | None = None,
) -> LogChunk:
    """Bytes of one run's output from ``offset``: the latest run, or run ``run``.

    A requeued job (preempted, evacuated, or lost) writes each run to its own files,
    so a reader follows one run to its end and then goes on to the next.

    A file that is not there reads as empty while its run may still create it (the
    run is the latest and the job has not ended: it may not have opened it yet), and
    as empty and complete for a run that never began (cancelled or refused before it
    was launched). A run that began and is over always has its files (the executors
    create them before the job starts, whatever follows), so their absence is an
    error, 404 ``log-not-found``: they were deleted or moved, or this server cannot
    read where they are."""
    job = get_job(session, caller, job_id)
    if offset < 0:
        raise ServiceError("invalid-offset", f"offset must be ≥ 0, got {offset}", field="offset")
    runs = job.attempt
    if run is None:
        run = runs
    elif not 1 <= run <= runs:
        raise ServiceError(
            "invalid-run",
            f"run {run} does not exist: this job has run {runs} time{'s' * (runs != 1)}"
            + (f"; ask for a run from 1 to {runs}" if runs else ""),
            field="run",
        )
    limit = max(1, min(limit, MAX_LOG_CHUNK))
    over = m.JobState(job.state).terminal or run < runs
    raw = job.stdout_path if stream == "stdout" else job.stderr_path
    empty = LogChunk(stream, offset, offset, "", 0, over, run, runs)
    if not raw or run == 0:
        return empty
    path = _run_path(Path(raw), job, run)
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(min(offset, size))
            data = f.read(limit)
    except FileNotFoundError:
        if over and _began(session, job, run):
            raise ServiceError(
                "log-not-found",
                f"run {run}'s {stream} is gone: {str(path)!r} is not there any more (deleted "
                "or moved, or on a filesystem this server cannot read); nothing of it can be "
                "shown",
                status=404,
            ) from None
        return empty
    cut = len(data) if over and offset + len(data) >= size else _utf8_cut(data)
    data = data[:cut]
    next_offset = offset + len(data)
    return LogChunk(
        stream,
        offset,
        next_offset,
        data.decode("utf-8", errors="replace"),
        size,
        over and next_offset >= size,
        run,
        runs,
    )


def _began(session: Session, job: m.Job, run: int) -> bool:
    """Whether run ``run`` of ``job`` was launched (and so created its log files)."""
    if run == job.attempt:
        return job.started_at is not None
    started = select(m.JobEvent.id).where(
        m.JobEvent.job_id == job.id, m.JobEvent.attempt == run, m.JobEvent.code == "started"
    )
    return session.execute(started.limit(1)).first() is not None


def _run_path(latest: Path, job: m.Job, run: int) -> Path:
    """Where run ``run`` wrote, from where the latest run writes: the executors keep
    each run's files in ``<job>/<run>/`` (``executors.records.attempt_dir``)."""
    if run == job.attempt:
        return latest
    if latest.parent.name != str(job.attempt) or latest.parent.parent.name != job.id:
        raise ServiceError(
            "log-not-found",
            f"run {run}'s output is not where Masnaa can read it: this job's site writes "
            "logs to paths of its own; only the latest run's can be read",
            field="run",
            status=404,
        )
    return latest.parent.parent / str(run) / latest.name


# --- usage ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProjectUsage:
    tenant: str
    project: str
    jobs: int
    gpu_hours: float
    running_gpus: int


def usage(
    session: Session, caller: Caller, *, now: float, since: float | None = None
) -> list[ProjectUsage]:
    """GPU-hours per project from the jobs table: earlier runs
    (``attained_service``) plus the current or last run."""
    stmt = visible(
        select(
            m.Job.tenant_id,
            m.Job.project_id,
            m.Job.tasks,
            m.Job.gpus_per_task,
            m.Job.started_at,
            m.Job.ended_at,
            m.Job.attained_service,
            m.Job.state,
        ),
        caller,
    )
    if since is not None:
        stmt = stmt.where(m.Job.submitted_at >= since)
    totals: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for tenant_id, project_id, tasks, gpt, started, ended, attained, state in session.execute(stmt):
        entry = totals[(tenant_id, project_id)]
        entry[0] += 1
        seconds = attained or 0.0
        if started is not None:
            end = ended if ended is not None else now
            seconds += max(0.0, end - started) * tasks * gpt
        entry[1] += seconds
        if state == m.JobState.RUNNING.value:
            entry[2] += tasks * gpt
    tenants = dict(session.execute(select(m.Tenant.id, m.Tenant.name)).all())
    projects = dict(session.execute(select(m.Project.id, m.Project.name)).all())
    out = [
        ProjectUsage(tenants[t], projects[p], int(v[0]), v[1] / 3600.0, int(v[2]))
        for (t, p), v in totals.items()
    ]
    out.sort(key=lambda u: (u.tenant, u.project))
    return out
