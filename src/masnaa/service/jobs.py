"""Jobs as users see them: submit, list, show, cancel (the queue, logs and usage as
users read them are ``service.job_views``).

This is the API's (and the portal's) side of the jobs table; the control loop
owns everything after ``pending`` (see ``masnaa.store.models``).

Invariants:
- A submitted job is valid against what the factory declares: known GPU
  types, sites and priority class, a class open to the job's tenant (403
  ``priority-class-not-allowed`` otherwise; checked at submission only, so a
  job already queued keeps its class when the operator narrows it), a project
  of the caller's tenant, a
  positive time limit, and a gang that fits at least one site (each task on one
  node, all tasks at one site). Drained or down nodes count: they come back.
- Submit writes the job row and its ``submitted`` event in the caller's
  transaction; a batch is all-or-nothing.
- Visibility: operators see every job; other users see their tenant's jobs.
  Members read their peers' jobs but cancel only their own; tenant admins
  cancel any job of their tenant. Another tenant's job is *not found*.
- Cancel: a pending job is cancelled at once; an admitted or running job gets
  ``cancel_requested`` and the loop stops it (with the job's grace period);
  a finished job cannot be cancelled (409 ``already-finished``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from masnaa.domain import reasons
from masnaa.domain.reasons import Phrase
from masnaa.service.caches import TtlCache
from masnaa.service.job_catalog import Catalog, catalog, forget_catalogs, what_fits
from masnaa.service.tenancy import Caller, ServiceError, forbidden, not_found
from masnaa.store import models as m
from masnaa.store.events import transition

MAX_ARGV = 1024
MAX_SCRIPT_BYTES = 256 * 1024
MAX_ENV = 512
MAX_BATCH = 1000
ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford-ish: no i, l, o, u


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
"""A string the databases can store (PostgreSQL refuses NUL characters)."""


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(value: str) -> str:
    # A name a shell can export: a Slurm site's batch script exports the job's
    # environment, and a local run cannot take "=" in a name either. Caught here, the
    # job is refused at submission instead of failing at launch at one site only.
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"environment variable name {value!r} is not valid: use letters, digits and _, "
            "not starting with a digit"
        )
    return value


EnvName = Annotated[Text, AfterValidator(_env_name)]


class JobSpec(BaseModel):
    """What a user asks for. ``command`` (argv) or ``script``, not both."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(default="", max_length=128)
    project: Text | None = Field(
        default=None,
        max_length=129,
        description="Project name in your tenant, or 'tenant/project'. Optional when "
        "your tenant has exactly one project.",
    )
    command: list[Text] = Field(default_factory=list, max_length=MAX_ARGV)
    script: Text | None = Field(default=None, max_length=MAX_SCRIPT_BYTES)
    env: dict[EnvName, Text] = Field(default_factory=dict, max_length=MAX_ENV)
    workdir: Text | None = Field(default=None, max_length=4096)
    tasks: int = Field(default=1, ge=1, le=100_000)
    gpus_per_task: int = Field(default=1, ge=1, le=1024)
    gpu_types: list[Text] = Field(
        default_factory=list,
        max_length=32,
        description="Acceptable GPU types, preferred first; empty: any declared type.",
    )
    time_limit: float = Field(
        default=3600.0,
        allow_inf_nan=False,
        description="Seconds; the job is stopped when it runs longer.",
    )
    priority_class: Text = Field(default="normal", max_length=32)
    sites: list[Text] | None = Field(
        default=None, max_length=64, description="Sites it may run at; null: any."
    )
    datasets: list[Text] = Field(
        default_factory=list,
        max_length=256,
        description="Ids of the datasets and artifacts it reads: it is placed only where "
        "their law allows (docs/residency.md).",
    )


def new_job_id() -> str:
    """``j-`` and 10 random characters (50 bits): one random draw, not ten."""
    bits = secrets.randbits(50)
    return "j-" + "".join(ID_ALPHABET[(bits >> shift) & 31] for shift in range(45, -5, -5))


_SUBMITTED: reasons.Reason = (Phrase("submitted"),)
_SUBMITTED_TEXT, _SUBMITTED_JSON = reasons.english(_SUBMITTED), reasons.to_json(_SUBMITTED)
_PROJECTS = TtlCache()


def invalidate_caches() -> None:
    """Forget cached hardware and projects (after declaring or deleting them)."""
    forget_catalogs()
    _PROJECTS.clear()


def _field(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def _validate(
    spec: JobSpec, catalog: Catalog, prefix: str = ""
) -> tuple[list[str], list[str] | None]:
    """Check ``spec`` against the catalog; return (GPU types, sites) to store."""
    if bool(spec.command) == (spec.script is not None):
        raise ServiceError(
            "command-or-script",
            'give either \'command\' (an argv list such as ["python", "train.py"]) '
            "or 'script' (a shell script), not both and not neither",
            field=_field(prefix, "command"),
        )
    if not spec.time_limit > 0 or spec.time_limit != spec.time_limit:
        raise ServiceError(
            "invalid-time-limit",
            f"time_limit must be a positive number of seconds (e.g. 3600 for one hour), "
            f"got {spec.time_limit}",
            field=_field(prefix, "time_limit"),
        )
    if spec.time_limit > 366 * 86400:
        raise ServiceError(
            "invalid-time-limit",
            f"time_limit {spec.time_limit:.0f} s is longer than a year: ask for at most "
            f"{366 * 86400} s and checkpoint",
            field=_field(prefix, "time_limit"),
        )
    if spec.sites is not None:
        if not spec.sites:
            raise ServiceError(
                "invalid-sites",
                "sites is an empty list: omit it (any site) or name at least one site",
                field=_field(prefix, "sites"),
            )
        unknown = [s for s in spec.sites if s not in catalog.sites]
        if unknown:
            raise ServiceError(
                "unknown-site",
                f"site {unknown[0]!r} is not declared: use one of "
                f"{', '.join(sorted(catalog.sites)) or '(no site is declared yet)'}",
                field=_field(prefix, "sites"),
            )
    if not catalog.gpu_types:
        raise ServiceError(
            "no-gpus-declared",
            "this factory declares no GPU types yet: an operator must declare its hardware "
            "(`masnaa up` does it for this machine)",
            status=409,
        )
    gpu_types = list(dict.fromkeys(spec.gpu_types)) or list(catalog.gpu_types)
    known = set(catalog.gpu_types)
    for t in gpu_types:
        if t not in known:
            raise ServiceError(
                "unknown-gpu-type",
                f"GPU type {t!r} is not declared: use one of {', '.join(catalog.gpu_types)}",
                field=_field(prefix, "gpu_types"),
            )
    sites = spec.sites if spec.sites is not None else sorted(catalog.sites)
    if not any(
        catalog.tasks_that_fit(s, t, spec.gpus_per_task) >= spec.tasks
        for s in sites
        for t in gpu_types
    ):
        raise ServiceError(
            "too-many-gpus",
            f"the job asks for {spec.tasks}×{spec.gpus_per_task} = "
            f"{spec.tasks * spec.gpus_per_task} GPUs, more than any allowed site can give "
            f"(each task on one node, all tasks at one site); "
            f"{what_fits(catalog, spec).advice(spec.gpus_per_task)}",
            field=_field(prefix, "gpus_per_task"),
        )
    return gpu_types, spec.sites


def _check_class_open(catalog: Catalog, priority_class: str, tenant: str, prefix: str) -> None:
    """Refuse an undeclared class, or one its operator did not open to ``tenant``
    (operators submitting into a tenant's project included: the class is the
    tenant's entitlement). Both name only the classes open to ``tenant``, so
    neither advises a class the next try would be refused."""
    allowed = catalog.classes_for(tenant)
    if priority_class not in catalog.priority_classes:
        raise ServiceError(
            "unknown-priority-class",
            f"priority class {priority_class!r} is not declared: use one of "
            f"{', '.join(allowed) if allowed else 'no class (ask an operator)'}",
            field=_field(prefix, "priority_class"),
        )
    if catalog.may_use(priority_class, tenant):
        return
    raise ServiceError(
        "priority-class-not-allowed",
        f"priority class {priority_class!r} is not open to tenant {tenant!r}: its jobs may "
        f"use {', '.join(allowed) if allowed else 'no class (ask an operator)'}",
        status=403,
        field=_field(prefix, "priority_class"),
    )


_NAMED = 5
"""Projects a ``project-required`` error names, so that the caller can pick one."""


@dataclass(frozen=True, slots=True)
class ProjectRef:
    id: int
    name: str
    tenant_id: int
    tenant: str


def _resolve_project(session: Session, caller: Caller, ref: str | None, prefix: str) -> ProjectRef:
    engine = session.get_bind()
    key = (caller.tenant_id if not caller.is_operator else "*", ref)
    cached: ProjectRef | None = _PROJECTS.get(engine, key)
    if cached is not None:
        return cached
    stmt = select(m.Project.id, m.Project.name, m.Project.tenant_id, m.Tenant.name).join(
        m.Tenant, m.Project.tenant_id == m.Tenant.id
    )
    if not caller.is_operator:
        stmt = stmt.where(m.Project.tenant_id == caller.tenant_id)
    if ref is None:
        candidates = session.execute(
            stmt.order_by(m.Tenant.name, m.Project.name).limit(_NAMED + 1)
        ).all()
        if len(candidates) != 1:
            named = ", ".join(f"{c[3]}/{c[1]}" for c in candidates[:_NAMED])
            more = ", …" if len(candidates) > _NAMED else ""
            raise ServiceError(
                "project-required",
                "name the project to charge ('project': 'name' or 'tenant/name'); "
                + (
                    "your tenant has no project yet"
                    if not candidates
                    else f"you have several: {named}{more}"
                ),
                field=_field(prefix, "project"),
            )
    else:
        tenant_name, _, name = ref.rpartition("/")
        stmt = stmt.where(m.Project.name == name)
        if tenant_name:
            stmt = stmt.where(m.Tenant.name == tenant_name)
        candidates = session.execute(stmt.limit(2)).all()
        if len(candidates) != 1:
            raise ServiceError(
                "unknown-project" if not candidates else "ambiguous-project",
                f"project {ref!r} is not one of yours: list them with `masnaa admin projects`"
                if not candidates
                else f"several tenants have a project {name!r}: write 'tenant/{name}'",
                field=_field(prefix, "project"),
            )
    project_id, project_name, tenant_id, tenant = candidates[0]
    found = ProjectRef(project_id, project_name, tenant_id, tenant)
    _PROJECTS.put(engine, key, found)
    return found


@dataclass(slots=True)
class Submitted:
    """Jobs validated for one request: the rows to insert, then (after
    ``write_submitted``) detached rows as inserted, and the names to render them."""

    job_rows: list[dict[str, Any]]
    event_rows: list[dict[str, Any]]
    names: dict[str, dict[int, str]]
    read_rows: list[dict[str, Any]] = field(default_factory=list)
    """(job, dataset) pairs of the jobs that read data (``job_datasets``)."""

    @property
    def jobs(self) -> list[m.Job]:
        return [m.Job(**row) for row in self.job_rows]


def write_submitted(session: Session, batches: Sequence[Submitted]) -> None:
    """Insert the rows of several validated requests: two Core ``INSERT``
    statements whatever their number (this is what makes group commit cheap)."""
    job_rows = [row for b in batches for row in b.job_rows]
    event_rows = [row for b in batches for row in b.event_rows]
    if job_rows:
        connection = session.connection()
        # Connection-level (Core) executemany: no ORM bulk machinery per row.
        connection.execute(insert(m.Job), job_rows)
        connection.execute(insert(m.JobEvent), event_rows)
    read_rows = [row for b in batches for row in b.read_rows]
    if read_rows:
        from masnaa.store.residency import JobDataset

        session.connection().execute(insert(JobDataset), read_rows)


def submit(session: Session, caller: Caller, spec: JobSpec, *, now: float) -> Submitted:
    done = prepare(session, caller, [spec], now=now, single=True)
    write_submitted(session, [done])
    return done


def submit_batch(
    session: Session, caller: Caller, specs: Sequence[JobSpec], *, now: float
) -> Submitted:
    """Validate every spec, then insert them all (jobs and events), or none."""
    done = prepare(session, caller, specs, now=now)
    write_submitted(session, [done])
    return done


def prepare(
    session: Session,
    caller: Caller,
    specs: Sequence[JobSpec],
    *,
    now: float,
    single: bool = False,
) -> Submitted:
    """Validate ``specs`` and build their rows; raise ``ServiceError`` on the
    first invalid one. Reads (cached) declarations only; writes nothing."""
    if not specs:
        raise ServiceError("empty-batch", "a batch needs at least one job", field="jobs")
    if len(specs) > MAX_BATCH:
        raise ServiceError(
            "batch-too-large",
            f"a batch holds at most {MAX_BATCH} jobs, got {len(specs)}: split it",
            field="jobs",
        )
    known = catalog(session)
    names: dict[str, dict[int, str]] = {"tenant": {}, "project": {}, "user": {}}
    names["user"][caller.user_id] = caller.user
    job_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    read_rows: list[dict[str, Any]] = []
    submitted_by: reasons.Reason = (Phrase("submitted-by", {"user": caller.user}),)
    by_text, by_json = reasons.english(submitted_by), reasons.to_json(submitted_by)
    for i, spec in enumerate(specs):
        prefix = "" if single else f"jobs[{i}]."
        gpu_types, sites = _validate(spec, known, prefix)
        project = _resolve_project(session, caller, spec.project, prefix)
        _check_class_open(known, spec.priority_class, project.tenant, prefix)
        names["tenant"][project.tenant_id] = project.tenant
        names["project"][project.id] = project.name
        job_id = new_job_id()
        if spec.datasets:  # its data's law decides where it may run: its lawful sites
            from masnaa.service import residency

            sites = residency.job_sites(session, project.tenant_id, spec.datasets, sites,
                                        now=now, field=_field(prefix, "datasets"))
            read_rows.extend({"job_id": job_id, "dataset_id": d}
                             for d in dict.fromkeys(spec.datasets))
        job_rows.append(
            {
                "id": job_id,
                "tenant_id": project.tenant_id,
                "project_id": project.id,
                "user_id": caller.user_id,
                "name": spec.name,
                "command": list(spec.command),
                "script": spec.script,
                "env": dict(spec.env),
                "workdir": spec.workdir,
                "tasks": spec.tasks,
                "gpus_per_task": spec.gpus_per_task,
                "gpu_types": gpu_types,
                "time_limit": float(spec.time_limit),
                "priority_class": spec.priority_class,
                "sites": sites,
                "submitted_at": now,
                "state": m.JobState.PENDING.value,
                "state_reason": _SUBMITTED_TEXT,
                "state_phrases": _SUBMITTED_JSON,
                "attempt": 0,
                "cancel_requested": False,
                "attained_service": 0.0,
                "idempotency_key": None,
                "request_digest": None,
                "version": 1,
            }
        )
        event_rows.append(
            {
                "job_id": job_id,
                "at": now,
                "from_state": None,
                "to_state": m.JobState.PENDING.value,
                "code": "submitted",
                "reason": by_text,
                "phrases": by_json,
                "attempt": 0,
            }
        )
    return Submitted(job_rows, event_rows, names, read_rows)


# --- reading --------------------------------------------------------------------


def visible(stmt: Any, caller: Caller) -> Any:
    """``stmt`` over jobs, narrowed to the caller's tenant unless an operator asks."""
    return stmt if caller.is_operator else stmt.where(m.Job.tenant_id == caller.tenant_id)


def get_job(session: Session, caller: Caller, job_id: str, *, for_update: bool = False) -> m.Job:
    stmt = visible(select(m.Job).where(m.Job.id == job_id), caller)
    if for_update:
        stmt = stmt.with_for_update()
    job: m.Job | None = session.scalars(stmt).first()
    if job is None:
        raise not_found("job", job_id)
    return job


def job_events(session: Session, job: m.Job) -> list[m.JobEvent]:
    return list(
        session.scalars(
            select(m.JobEvent).where(m.JobEvent.job_id == job.id).order_by(m.JobEvent.id)
        )
    )


def list_jobs(
    session: Session,
    caller: Caller,
    *,
    states: Sequence[str] = (),
    project: str | None = None,
    tenant: str | None = None,
    user: str | None = None,
    limit: int = 100,
    before: str | None = None,
) -> list[m.Job]:
    """Newest first. ``before`` is the id of the last job of the previous page."""
    stmt = visible(select(m.Job), caller)
    if states:
        bad = [s for s in states if s not in {x.value for x in m.JobState}]
        if bad:
            raise ServiceError(
                "invalid-state",
                f"state {bad[0]!r} is not a job state: use "
                f"{', '.join(s.value for s in m.JobState)}",
                field="state",
            )
        stmt = stmt.where(m.Job.state.in_(list(states)))
    if tenant is not None:
        stmt = stmt.join(m.Tenant, m.Job.tenant_id == m.Tenant.id).where(m.Tenant.name == tenant)
    if project is not None:
        tenant_name, _, name = project.rpartition("/")
        stmt = stmt.join(m.Project, m.Job.project_id == m.Project.id).where(m.Project.name == name)
        if tenant_name:
            stmt = stmt.join(m.Tenant, m.Project.tenant_id == m.Tenant.id).where(
                m.Tenant.name == tenant_name
            )
    if user is not None:
        stmt = stmt.join(m.User, m.Job.user_id == m.User.id).where(m.User.name == user)
    if before is not None:
        anchor = session.execute(
            visible(select(m.Job.submitted_at, m.Job.id).where(m.Job.id == before), caller)
        ).first()
        if anchor is None:
            # Silently starting again from the newest would hand a client page one
            # twice; it must learn that its cursor is wrong.
            raise ServiceError(
                "invalid-cursor",
                f"before={before!r} names no job you can see: pass the id of the last job "
                "of the previous page, or leave it out for the first page",
                field="before",
            )
        at, anchor_id = anchor
        stmt = stmt.where(
            (m.Job.submitted_at < at) | ((m.Job.submitted_at == at) & (m.Job.id < anchor_id))
        )
    stmt = stmt.order_by(m.Job.submitted_at.desc(), m.Job.id.desc()).limit(max(1, min(limit, 1000)))
    return list(session.scalars(stmt))


def names(session: Session, jobs: Sequence[m.Job]) -> dict[str, dict[int, str]]:
    """Tenant, project and user names of ``jobs`` (one query each, for rendering)."""
    out: dict[str, dict[int, str]] = {"tenant": {}, "project": {}, "user": {}}
    tenant_ids = {j.tenant_id for j in jobs}
    project_ids = {j.project_id for j in jobs}
    user_ids = {j.user_id for j in jobs if j.user_id is not None}
    if tenant_ids:
        out["tenant"] = dict(
            session.execute(
                select(m.Tenant.id, m.Tenant.name).where(m.Tenant.id.in_(tenant_ids))
            ).all()
        )
    if project_ids:
        out["project"] = dict(
            session.execute(
                select(m.Project.id, m.Project.name).where(m.Project.id.in_(project_ids))
            ).all()
        )
    if user_ids:
        out["user"] = dict(
            session.execute(select(m.User.id, m.User.name).where(m.User.id.in_(user_ids))).all()
        )
    return out


# --- cancel -------------------------------------------------------------------


def cancel(session: Session, caller: Caller, job_id: str, *, now: float) -> m.Job:
    job = get_job(session, caller, job_id, for_update=True)
    if job.user_id != caller.user_id and not caller.admin_of(job.tenant_id):
        raise forbidden(
            "members cancel only their own jobs: ask the job's owner or your tenant admin"
        )
    state = m.JobState(job.state)
    if state.terminal:
        raise ServiceError(
            "already-finished",
            f"job {job.id} already ended ({job.state}); there is nothing to cancel",
            status=409,
        )
    if state is m.JobState.PENDING:
        job.ended_at = now
        job.wait_code = None
        job.wait_message = None
        job.wait_phrases = []
        job.estimated_start = None
        transition(
            session,
            job,
            m.JobState.CANCELLED,
            at=now,
            code="cancelled",
            reason=(Phrase("cancelled-pending", {"user": caller.user}),),
        )
    elif not job.cancel_requested:
        job.cancel_requested = True
        transition(
            session,
            job,
            state,
            at=now,
            code="cancel-requested",
            reason=(Phrase("cancel-requested", {"user": caller.user}),),
        )
    session.flush()
    return job
