"""``/api/v1/jobs``, ``/api/v1/queue`` and ``/api/v1/usage``.

Reasons (a job's, its events', ``explain``'s) are shown as the caller may read them:
another tenant's job that a reason names is "a job of another tenant"
(``service.reason_views``)."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from masnaa.api.deps import (
    CurrentCaller,
    State,
    bearer_secret,
    caller_for,
    check_query,
    forbid_unknown_query,
    state_of,
)
from masnaa.api.errors import ERROR_RESPONSES
from masnaa.api.schemas import (
    BatchIn,
    ExplainOut,
    JobDetail,
    JobList,
    JobOut,
    LogOut,
    ProjectUsageOut,
    QueueOut,
    TenantUseOut,
    UsageOut,
    event_out,
    phrases_out,
)
from masnaa.service import job_views, reason_views, submit_keys
from masnaa.service import jobs as svc
from masnaa.service.tenancy import Caller
from masnaa.store import models as m

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES,
                   dependencies=[Depends(forbid_unknown_query)])


def _render(
    session: Session | None,
    caller: Caller,
    jobs: Sequence[Any],
    positions: dict[str, int] | None = None,
    names: dict[str, dict[int, str]] | None = None,
    redact: reason_views.Redactor | None = None,
) -> list[JobOut]:
    if names is None:
        assert session is not None
        names = svc.names(session, jobs)
    if redact is None:  # a just-submitted job (no session) names no other job
        redact = reason_views.Redactor() if session is None else reason_views.redactor(
            session, caller, [r for j in jobs for r in reason_views.job_reasons(j)])
    out = []
    for j in jobs:
        may_see_env = j.user_id == caller.user_id or caller.admin_of(j.tenant_id)
        said = redact.reason(j.state_reason, j.state_phrases)
        waits = redact.reason(j.wait_message, j.wait_phrases)
        out.append(
            JobOut(
                id=j.id,
                name=j.name,
                tenant=names["tenant"].get(j.tenant_id, "?"),
                project=names["project"].get(j.project_id, "?"),
                user=names["user"].get(j.user_id) if j.user_id is not None else None,
                state=j.state,
                state_reason=said.text or "",
                state_phrases=phrases_out(said.phrases),
                attempt=j.attempt,
                cancel_requested=j.cancel_requested,
                command=list(j.command),
                script=j.script,
                env=dict(j.env) if may_see_env else {},
                workdir=j.workdir,
                tasks=j.tasks,
                gpus_per_task=j.gpus_per_task,
                total_gpus=j.tasks * j.gpus_per_task,
                gpu_types=list(j.gpu_types),
                time_limit=j.time_limit,
                priority_class=j.priority_class,
                sites=list(j.sites) if j.sites is not None else None,
                submitted_at=j.submitted_at,
                started_at=j.started_at,
                ended_at=j.ended_at,
                exit_code=j.exit_code,
                placement=j.placement,
                site=j.site,
                gpu_type=j.gpu_type,
                wait_code=j.wait_code,
                wait_message=waits.text,
                wait_phrases=phrases_out(waits.phrases),
                estimated_start=j.estimated_start,
                position=positions.get(j.id) if positions is not None else None,
            )
        )
    return out


_NOT_YET = dict.fromkeys(
    ("started_at", "ended_at", "exit_code", "placement", "site", "gpu_type", "wait_code",
     "wait_message", "wait_phrases", "estimated_start"),
)
"""Columns a just-submitted job has not set yet (the control loop writes them)."""


hot = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)
"""Routes on the submission hot path: no dependencies besides the body (FastAPI
spends more on solving dependencies than on anything else of a submission),
the same checks done by plain calls."""


@hot.post(
    "/jobs",
    status_code=201,
    response_model=JobOut,
    summary="Submit a job (with an Idempotency-Key header, a retry returns the same job)",
    responses={200: {"model": JobOut, "description": "a retry: the job this key made"}},
    openapi_extra={"security": [{"HTTPBearer": []}]},
)
async def submit(spec: svc.JobSpec, request: Request) -> Response:
    caller = await caller_for(request, bearer_secret(request))
    check_query(request)
    state = state_of(request)
    key = submit_keys.check_key(request.headers.get(submit_keys.HEADER))
    done = await state.batcher.submit(caller, spec, key)  # group commit, see api/batcher.py
    if isinstance(done, submit_keys.Replayed):  # a retry: the job its key made, as it is now
        with state.db.read() as session:
            again = _render(session, caller, [svc.get_job(session, caller, done.job_id)])[0]
        return Response(again.model_dump_json(), status_code=200, media_type="application/json",
                        headers={submit_keys.REPLAYED: "true"})
    # Render straight from the inserted row: no ORM object needed on this hot path.
    row = SimpleNamespace(**_NOT_YET, **done.job_rows[0])
    out = _render(None, caller, [row], names=done.names)[0]
    state.metrics.submissions.inc()
    state.metrics.transition(None, "pending")
    # Already a validated JobOut: skip FastAPI's second validation of the answer.
    return Response(out.model_dump_json(), status_code=201, media_type="application/json")


@router.post(
    "/jobs/batch", status_code=201, response_model=JobList, summary="Submit jobs, all or none"
)
def submit_batch(body: BatchIn, request: Request, state: State, caller: CurrentCaller
                 ) -> JobList:
    submit_keys.refuse_on_batch(request.headers.get(submit_keys.HEADER))
    with state.db.write() as session:
        done = svc.submit_batch(session, caller, body.jobs, now=state.now())
    out = _render(None, caller, done.jobs, names=done.names)
    state.metrics.submissions.inc(len(out))
    state.metrics.transition(None, "pending", len(out))
    return JobList(jobs=out, next=None)


@router.get("/jobs", response_model=JobList, summary="List jobs, newest first")
def list_jobs(
    state: State,
    caller: CurrentCaller,
    job_state: Annotated[list[str] | None, Query(alias="state")] = None,
    project: str | None = None,
    tenant: str | None = None,
    user: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: str | None = None,
) -> JobList:
    with state.db.read() as session:
        jobs = svc.list_jobs(
            session, caller, states=job_state or (), project=project, tenant=tenant, user=user,
            limit=limit, before=before,
        )
        out = _render(session, caller, jobs)
    return JobList(jobs=out, next=out[-1].id if len(out) == limit else None)


@router.get("/jobs/{job_id}", response_model=JobDetail, summary="A job and its history")
def show(job_id: str, state: State, caller: CurrentCaller) -> JobDetail:
    with state.db.read() as session:
        job = svc.get_job(session, caller, job_id)
        history = svc.job_events(session, job)
        redact = reason_views.redactor(session, caller, [
            *reason_views.job_reasons(job), *reason_views.event_reasons(history)])
        base = _render(session, caller, [job], redact=redact)[0]
        events = [event_out(e, redact) for e in history]
    return JobDetail(**base.model_dump(), events=events)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, summary="Cancel a job")
def cancel(job_id: str, state: State, caller: CurrentCaller) -> JobOut:
    with state.db.write() as session:
        job = svc.cancel(session, caller, job_id, now=state.now())
        out = _render(session, caller, [job])[0]
    if out.state == m.JobState.CANCELLED.value:
        state.metrics.transition(m.JobState.PENDING.value, out.state)
    return out


def _summary(x: job_views.Explanation, shown: JobOut) -> str:
    """One sentence; ``shown``: the job as the caller reads it (its reasons redacted)."""
    job = x.job
    wait_message = shown.wait_message
    if job.state == m.JobState.PENDING.value:
        where = f"position {x.position} of {x.pending_total} pending" if x.position else "pending"
        if wait_message:
            return f"waits ({where}): {wait_message}"
        return f"waits ({where}): the control loop has not looked at it yet"
    if job.state == m.JobState.ADMITTED.value:
        if wait_message:  # its launch failed on the machine and is retried
            return f"admitted: its GPUs are chosen, but {wait_message}"
        return "admitted: its GPUs are chosen and it is starting"
    if job.state == m.JobState.RUNNING.value:
        extra = " (cancel requested)" if job.cancel_requested else ""
        if job.started_at is None and wait_message:
            # Handed to the site's own scheduler, which holds it: its reason says why.
            return (f"handed to {job.site or '?'} ({job.gpu_type or '?'}), not started yet: "
                    f"{wait_message}{extra}")
        return f"running on {job.site or '?'} ({job.gpu_type or '?'}){extra}"
    return f"{job.state}: {shown.state_reason}"


@router.get("/jobs/{job_id}/explain", response_model=ExplainOut, summary="Why a job waits")
def explain(job_id: str, state: State, caller: CurrentCaller) -> ExplainOut:
    with state.db.read() as session:
        x = job_views.explain(session, caller, job_id)
        last = [x.last_event] if x.last_event is not None else []
        redact = reason_views.redactor(session, caller, [
            *reason_views.job_reasons(x.job), *reason_views.event_reasons(last)])
        shown = _render(session, caller, [x.job], redact=redact)[0]
        return ExplainOut(
            id=x.job.id,
            state=x.job.state,
            summary=_summary(x, shown),
            wait_code=x.job.wait_code,
            wait_message=shown.wait_message,
            wait_phrases=shown.wait_phrases,
            estimated_start=x.job.estimated_start,
            position=x.position,
            pending_total=x.pending_total,
            last_event=event_out(x.last_event, redact) if x.last_event is not None else None,
        )


@router.get("/jobs/{job_id}/logs", response_model=LogOut, summary="Read a job's output")
def logs(
    job_id: str,
    state: State,
    caller: CurrentCaller,
    stream: Literal["stdout", "stderr"] = "stdout",
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=job_views.MAX_LOG_CHUNK)] = 64 * 1024,
    run: Annotated[
        int | None, Query(ge=1, le=2**31, description="The run to read; default: the latest.")
    ] = None,
) -> LogOut:
    with state.db.read() as session:
        chunk = job_views.read_log(
            session, caller, job_id, stream=stream, offset=offset, limit=limit, run=run
        )
    return LogOut(
        stream=chunk.stream, offset=chunk.offset, next_offset=chunk.next_offset, size=chunk.size,
        data=chunk.data, complete=chunk.complete, run=chunk.run, runs=chunk.runs,
    )


@router.get("/queue", response_model=QueueOut, summary="Active jobs, positions, tenant use")
def queue(
    state: State, caller: CurrentCaller, limit: Annotated[int, Query(ge=1, le=5000)] = 500
) -> QueueOut:
    with state.db.read() as session:
        view = job_views.queue(session, caller, limit=limit)
        jobs = _render(session, caller, view.jobs, view.positions)
    return QueueOut(
        jobs=jobs,
        tenants=[
            TenantUseOut(
                tenant=t.tenant, share=t.share, share_fraction=t.share_fraction,
                gpus_in_use=t.gpus_in_use, gpu_fraction_in_use=t.gpu_fraction_in_use,
                quota_nominal=t.quota_nominal, pending_jobs=t.pending_jobs,
            )
            for t in view.tenants
        ],
        total_gpus=view.total_gpus,
    )


@router.get("/usage", response_model=UsageOut, summary="GPU-hours per project")
def usage(
    state: State,
    caller: CurrentCaller,
    since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
) -> UsageOut:
    with state.db.read() as session:
        rows = job_views.usage(session, caller, now=state.now(), since=since)
    return UsageOut(
        projects=[
            ProjectUsageOut(
                tenant=u.tenant, project=u.project, jobs=u.jobs, gpu_hours=u.gpu_hours,
                running_gpus=u.running_gpus,
            )
            for u in rows
        ]
    )
