"""Researchers' pages: dashboard, jobs, the submit form, job detail with live logs, usage.

Every read goes through ``service.jobs`` with the signed-in caller, so the
portal sees exactly what the API shows that caller (another tenant's job is
the not-found page). Writes (submit, cancel) run in one ``db.write()``
transaction each, like the API's routes, and count in the same metrics.

JSON endpoints for the page scripts (``/jobs/validate``, ``/jobs/{id}/logs.json``,
``/jobs/{id}/state.json``) use the session cookie; the validation endpoint
writes nothing and still requires the CSRF header, like every POST.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from masnaa.portal import forms, session
from masnaa.portal.labels import JOB_STATES
from masnaa.portal.web import Page, PageDep, PortalRoute
from masnaa.service import job_catalog, job_views, reason_views, tenancy
from masnaa.service import jobs as svc
from masnaa.service.tenancy import Caller, ServiceError
from masnaa.store import models as m

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

ACTIVE = (m.JobState.PENDING.value, m.JobState.ADMITTED.value, m.JobState.RUNNING.value)
FINISHED = tuple(s.value for s in m.TERMINAL_STATES)
PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as the pages show it (names resolved, position when pending)."""

    job: Any
    """The job row, its reasons as the caller may read them (``reason_views.ShownJob``)."""
    tenant: str
    project: str
    user: str | None
    position: int | None


def _rows(
    session: Session, caller: Caller, jobs: Sequence[m.Job], positions: dict[str, int]
) -> list[JobRow]:
    names = svc.names(session, jobs)
    redact = reason_views.redactor(
        session, caller, [r for j in jobs for r in reason_views.job_reasons(j)])
    return [
        JobRow(
            reason_views.ShownJob(j, redact),
            names["tenant"].get(j.tenant_id, "?"),
            names["project"].get(j.project_id, "?"),
            names["user"].get(j.user_id) if j.user_id is not None else None,
            positions.get(j.id),
        )
        for j in jobs
    ]


@router.get("/")
def dashboard(page: PageDep) -> Response:
    caller = page.signed_in()
    with page.state.db.read() as read:
        active = svc.list_jobs(read, caller, states=ACTIVE, user=caller.user, limit=200)
        recent = svc.list_jobs(read, caller, states=FINISHED, user=caller.user, limit=10)
        positions = job_views.pending_positions(read, caller) if active else {}
        running = [j for j in active if j.state != m.JobState.PENDING.value]
        waiting = [j for j in active if j.state == m.JobState.PENDING.value]
        waiting.sort(key=lambda j: positions.get(j.id, 0))
        return page.render(
            "dashboard.html",
            running=_rows(read, caller, running, positions),
            waiting=_rows(read, caller, waiting, positions),
            recent=_rows(read, caller, recent, positions),
            pending_total=len(positions),
        )


@router.get("/jobs")
def jobs_list(
    page: PageDep,
    state: Annotated[str, Query(max_length=16)] = "",
    before: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    caller = page.signed_in()
    states = (state,) if state in JOB_STATES else ()
    with page.state.db.read() as read:
        try:
            jobs = svc.list_jobs(read, caller, states=states, limit=PAGE_SIZE, before=before)
        except ServiceError:  # a stale "older" link: the newest page, not an error page
            jobs = svc.list_jobs(read, caller, states=states, limit=PAGE_SIZE)
        positions = job_views.pending_positions(read, caller) if any(
            j.state == m.JobState.PENDING.value for j in jobs
        ) else {}
        return page.render(
            "jobs.html",
            rows=_rows(read, caller, jobs, positions),
            state=state if states else "",
            next_before=jobs[-1].id if len(jobs) == PAGE_SIZE else None,
        )


# --- submit ------------------------------------------------------------------------


def _form_choices(read: Session, caller: Caller) -> dict[str, list[str]]:
    catalog = job_catalog.catalog(read)
    projects = tenancy.list_projects(read, caller)
    tenant_names = {t.id: t.name for t in tenancy.list_tenants(read, caller)}
    return {
        "projects": [
            f"{tenant_names.get(p.tenant_id, '?')}/{p.name}" if caller.is_operator else p.name
            for p in projects
        ],
        "gpu_types": list(catalog.gpu_types),
        "sites": sorted(catalog.sites),
        # The classes the caller's tenant may use (an operator submits for any tenant).
        "priority_classes": sorted(
            catalog.priority_classes, key=lambda c: catalog.priority_classes[c]
        ) if caller.is_operator else catalog.classes_for(caller.tenant or ""),
    }


async def _form_fields(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.get("/jobs/new")
def new_job(page: PageDep) -> Response:
    caller = page.signed_in()
    with page.state.db.read() as read:
        choices = _form_choices(read, caller)
    values = dict.fromkeys(forms.FIELDS, "")
    values.update(tasks="1", gpus_per_task="1", time_limit="60", priority_class="normal")
    if choices["projects"]:
        values["project"] = choices["projects"][0]
    return page.render("job_new.html", values=values, errors={}, choices=choices)


@router.post("/jobs/validate")
async def validate(request: Request, page: PageDep) -> Response:
    """Errors of a half-filled form (``{"errors": {field: sentence}}``); writes nothing."""
    page.signed_in()
    session.check_csrf(request, request.headers.get(session.CSRF_HEADER))
    fields = await _form_fields(request)

    def run() -> dict[str, str]:
        assert page.caller is not None
        with page.state.db.read() as read:
            return forms.check(read, page.caller, fields, page.lang).errors

    errors = await run_in_threadpool(run)
    return JSONResponse({"errors": errors}, headers={"Cache-Control": "no-store"})


@router.post("/jobs/new")
async def submit(request: Request, page: PageDep) -> Response:
    caller = page.signed_in()
    fields = await _form_fields(request)
    session.check_csrf(request, fields.get(session.CSRF_FIELD))

    def run() -> Response:
        with page.state.db.write() as write:
            checked = forms.check(write, caller, fields, page.lang)
            if checked.spec is not None:
                done = svc.submit(write, caller, checked.spec, now=page.now)
                job_id = str(done.job_rows[0]["id"])
        if checked.spec is None:
            with page.state.db.read() as read:
                choices = _form_choices(read, caller)
            return page.render(
                "job_new.html", status=422, values=checked.values, errors=checked.errors,
                choices=choices,
            )
        page.state.metrics.submissions.inc()
        page.state.metrics.transition(None, m.JobState.PENDING.value)
        return page.redirect(f"/jobs/{job_id}")

    return await run_in_threadpool(run)


# --- one job ---------------------------------------------------------------------


def _may_cancel(caller: Caller, job: m.Job) -> bool:
    terminal = m.JobState(job.state).terminal
    return not terminal and (job.user_id == caller.user_id or caller.admin_of(job.tenant_id))


@router.get("/jobs/{job_id}")
def job_detail(job_id: str, page: PageDep) -> Response:
    caller = page.signed_in()
    with page.state.db.read() as read:
        explained = job_views.explain(read, caller, job_id)
        job = explained.job
        history = svc.job_events(read, job)
        redact = reason_views.redactor(read, caller, [
            *reason_views.job_reasons(job), *reason_views.event_reasons(history)])
        row = _rows(read, caller, [job],
                    {job.id: explained.position} if explained.position else {})[0]
        return page.render(
            "job.html",
            row=row,
            job=row.job,
            events=[reason_views.ShownEvent(e, redact) for e in history],
            pending_total=explained.pending_total,
            may_cancel=_may_cancel(caller, job),
            terminal=m.JobState(job.state).terminal,
        )


@router.get("/jobs/{job_id}/state.json")
def job_state(job_id: str, page: PageDep) -> Response:
    caller = page.signed_in()
    with page.state.db.read() as read:
        job = svc.get_job(read, caller, job_id)
        return JSONResponse(
            {"state": job.state, "cancel_requested": job.cancel_requested},
            headers={"Cache-Control": "no-store"},
        )


@router.get("/jobs/{job_id}/logs.json")
def job_logs(
    job_id: str,
    page: PageDep,
    stream: Literal["stdout", "stderr"] = "stdout",
    offset: Annotated[int, Query(ge=0)] = 0,
    run: Annotated[int | None, Query(ge=1, le=2**31)] = None,
) -> Response:
    caller = page.signed_in()
    with page.state.db.read() as read:
        chunk = job_views.read_log(
            read, caller, job_id, stream=stream, offset=offset, limit=64 * 1024, run=run
        )
    return JSONResponse(
        {"data": chunk.data, "next_offset": chunk.next_offset, "complete": chunk.complete,
         "run": chunk.run, "runs": chunk.runs},
        headers={"Cache-Control": "no-store"},
    )


@router.post("/jobs/{job_id}/cancel")
def cancel(
    job_id: str, page: PageDep, csrf_token: Annotated[str, Form(max_length=256)] = ""
) -> Response:
    caller = page.signed_in()
    session.check_csrf(page.request, csrf_token)
    try:
        with page.state.db.write() as write:
            job = svc.cancel(write, caller, job_id, now=page.now)
            cancelled = job.state == m.JobState.CANCELLED.value
    except ServiceError as exc:
        if exc.code != "already-finished":
            raise
        # Ended between the page's last look and the click (a second tab, a double
        # click): the job's page says how it ended, which is the answer.
        return page.redirect(f"/jobs/{job_id}")
    if cancelled:
        page.state.metrics.transition(m.JobState.PENDING.value, m.JobState.CANCELLED.value)
    return page.redirect(f"/jobs/{job_id}")


# --- usage ---------------------------------------------------------------------------


def _usage(page: Page, days: int) -> list[job_views.ProjectUsage]:
    caller = page.signed_in()
    since = page.now - days * 86400 if days > 0 else None
    with page.state.db.read() as read:
        return job_views.usage(read, caller, now=page.now, since=since)


MAX_USAGE_DAYS = 3660


def _days(text: str) -> int | None:
    """``days`` as typed in the box: a whole number from 0 to ``MAX_USAGE_DAYS``."""
    try:
        days = int(text.strip())
    except ValueError:
        return None
    return days if 0 <= days <= MAX_USAGE_DAYS else None


@router.get("/usage")
def usage(page: PageDep, days: Annotated[str, Query(max_length=64)] = "30") -> Response:
    wanted = _days(days)
    error = None
    if wanted is None:  # the page again, the value kept, and what would be right
        error = page._("Enter a number from %(lo)s to %(hi)s.", lo=page.lang.number(0),
                       hi=page.lang.number(MAX_USAGE_DAYS))
    rows = _usage(page, 30 if wanted is None else wanted)
    return page.render(
        "usage.html", rows=rows, days=days if wanted is None else wanted, error=error,
        total=sum(r.gpu_hours for r in rows),
    )


@router.get("/usage.csv")
def usage_csv(page: PageDep, days: Annotated[int, Query(ge=0, le=MAX_USAGE_DAYS)] = 30) -> Response:
    rows = _usage(page, days)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["tenant", "project", "jobs", "gpu_hours", "running_gpus"])
    for r in rows:
        writer.writerow([r.tenant, r.project, r.jobs, f"{r.gpu_hours:.4f}", r.running_gpus])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="masnaa-usage-{days}d.csv"',
            "Cache-Control": "no-store",
        },
    )
