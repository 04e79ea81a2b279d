"""Response (and non-job request) bodies of the API.

Requests forbid unknown fields (``extra="forbid"``): a typo is an error, not a
silent default. Times are UNIX seconds (floats); ``null`` means "not yet".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from masnaa.domain import reasons
from masnaa.service.jobs import MAX_BATCH, JobSpec
from masnaa.service.reason_views import Redactor
from masnaa.service.tenancy import Caller
from masnaa.store import models as m

MAX_INT = 2**31 - 1
"""Largest integer the databases store in an INTEGER column."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- jobs --------------------------------------------------------------------


class BatchIn(Strict):
    jobs: list[JobSpec] = Field(
        max_length=MAX_BATCH, description="Jobs to submit together: all or none."
    )


class PhraseOut(BaseModel):
    """One phrase of a reason (``masnaa.domain.reasons``): a template key and its values."""

    key: str
    params: dict[str, Any] = Field(
        description="Placeholder → value: a name, a number, or a nested phrase {key, params}."
    )


REASON_PHRASES = (
    "The same reason as phrases, for a client that shows it in another language; empty "
    "for reasons written before phrases existed."
)


class EventOut(BaseModel):
    at: float
    from_state: str | None
    to_state: str
    code: str
    reason: str = Field(description="Why, in English.")
    phrases: list[PhraseOut] = Field(description=REASON_PHRASES)
    attempt: int


class JobOut(BaseModel):
    id: str
    name: str
    tenant: str
    project: str
    user: str | None
    state: str
    state_reason: str = Field(description="Why the state last changed, in English.")
    state_phrases: list[PhraseOut] = Field(description=REASON_PHRASES)
    attempt: int
    cancel_requested: bool
    command: list[str]
    script: str | None
    env: dict[str, str] = Field(
        description="Shown only to the job's owner, its tenant's admins and operators."
    )
    workdir: str | None
    tasks: int
    gpus_per_task: int
    total_gpus: int
    gpu_types: list[str]
    time_limit: float
    priority_class: str
    sites: list[str] | None
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    placement: list[dict[str, Any]] | None
    site: str | None
    gpu_type: str | None
    wait_code: str | None
    wait_message: str | None
    wait_phrases: list[PhraseOut] = Field(description=REASON_PHRASES)
    estimated_start: float | None
    position: int | None = Field(
        default=None, description="1-based place among pending jobs (queue view only)."
    )


class JobDetail(JobOut):
    events: list[EventOut]


class JobList(BaseModel):
    jobs: list[JobOut]
    next: str | None = Field(description="Pass as 'before' to get the next page; null at the end.")


class ExplainOut(BaseModel):
    id: str
    state: str
    summary: str
    wait_code: str | None
    wait_message: str | None
    wait_phrases: list[PhraseOut] = Field(description=REASON_PHRASES)
    estimated_start: float | None
    position: int | None
    pending_total: int
    last_event: EventOut | None


class LogOut(BaseModel):
    stream: str
    offset: int
    next_offset: int
    size: int
    data: str
    complete: bool
    """This run's output is all read and it writes no more (it ended, or a later run
    exists): read run ``run + 1`` next if ``runs`` is larger."""
    run: int
    """The run read (0: the job has not run yet)."""
    runs: int
    """Runs the job has had so far (a preempted or lost run is requeued as a new one)."""


class TenantUseOut(BaseModel):
    tenant: str
    share: float
    share_fraction: float
    gpus_in_use: dict[str, int]
    gpu_fraction_in_use: float
    quota_nominal: dict[str, int]
    pending_jobs: int


class QueueOut(BaseModel):
    jobs: list[JobOut]
    tenants: list[TenantUseOut]
    total_gpus: int


class ProjectUsageOut(BaseModel):
    tenant: str
    project: str
    jobs: int
    gpu_hours: float
    running_gpus: int


class UsageOut(BaseModel):
    projects: list[ProjectUsageOut]


# --- tenancy -----------------------------------------------------------------


class WhoAmI(BaseModel):
    user: str
    role: str
    tenant: str | None

    @staticmethod
    def of(caller: Caller) -> WhoAmI:
        return WhoAmI(user=caller.user, role=caller.role.value, tenant=caller.tenant)


class TenantIn(Strict):
    name: str = Field(max_length=64)
    kind: str = "university"
    country: str = Field(default="MA", max_length=2)
    share: float = Field(default=1.0, allow_inf_nan=False)


class TenantOut(BaseModel):
    name: str
    kind: str
    country: str
    share: float
    created_at: float


class ProjectIn(Strict):
    name: str = Field(max_length=64)
    tenant: str | None = Field(default=None, description="Required for operators.")


class ProjectOut(BaseModel):
    name: str
    tenant: str
    created_at: float


class UserIn(Strict):
    name: str = Field(max_length=64)
    role: str = "member"
    tenant: str | None = Field(
        default=None, description="Default: the caller's tenant. Operators have none."
    )
    email: str | None = Field(default=None, max_length=254)


class UserOut(BaseModel):
    name: str
    role: str
    tenant: str | None
    email: str | None
    created_at: float


class TokenIn(Strict):
    user: str | None = Field(default=None, description="Default: the caller.")
    ttl_seconds: float | None = Field(
        default=None, allow_inf_nan=False, le=100 * 366 * 86400,
        description="Lifetime; null: no expiry.",
    )
    label: str = Field(default="", max_length=64)


class TokenOut(BaseModel):
    id: int
    user: str
    prefix: str
    label: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None


class TokenIssued(TokenOut):
    token: str = Field(description="The secret. Shown once: store it now.")


# --- hardware and quotas -------------------------------------------------------


class SiteOut(BaseModel):
    name: str
    country: str
    currency: str
    executor: str
    state: str
    reason: str


class NodeOut(BaseModel):
    name: str
    site: str
    gpu_type: str
    gpu_count: int
    domains: list[str]
    state: str
    reason: str
    virtual: bool


class DrainIn(Strict):
    reason: str = Field(default="", max_length=500)
    evacuate: bool = Field(
        default=True,
        description="Move the jobs running on it: each is preempted (SIGTERM, its priority "
        "class's grace to checkpoint, SIGKILL) and requeued, to run again only where its data "
        "may go. False: they run to their end (no new job starts there either way).",
    )


class UndrainIn(Strict):
    reason: str = Field(default="", max_length=500)


class NodeChangeOut(NodeOut):
    evacuated: list[str] = Field(
        default_factory=list, description="Jobs this request asked to move off the node."
    )


class SiteChangeOut(SiteOut):
    evacuated: list[str] = Field(
        default_factory=list, description="Jobs this request asked to move off the site."
    )


class QuotaIn(Strict):
    tenant: str
    site: str
    gpu_type: str
    nominal: int = Field(ge=0, le=MAX_INT)
    borrowing_limit: int | None = Field(default=None, ge=0, le=MAX_INT)
    lending_limit: int | None = Field(default=None, ge=0, le=MAX_INT)


class QuotaOut(BaseModel):
    tenant: str
    site: str
    gpu_type: str
    nominal: int
    borrowing_limit: int | None
    lending_limit: int | None


class PriorityClassOut(BaseModel):
    name: str
    value: int
    preemptible: bool
    can_preempt: bool
    grace_seconds: float
    open_to_all: bool = Field(description="Every tenant's jobs may use it.")
    tenants: list[str] = Field(
        description="When not open to all: the tenants whose jobs may use it. Operators see "
        "every name; anyone else sees at most their own tenant (listed: it may use the class)."
    )


class Health(BaseModel):
    status: str


def _phrases(stored: object) -> list[PhraseOut]:
    return [PhraseOut(**p.to_json()) for p in reasons.from_json(stored)]


def phrases_out(stored: object) -> list[PhraseOut]:
    """Stored phrases (JSON) as the API answers them."""
    return _phrases(stored)


def job_phrases(job: m.Job) -> list[PhraseOut]:
    return _phrases(job.state_phrases)


def wait_phrases(job: m.Job) -> list[PhraseOut]:
    return _phrases(job.wait_phrases)


def event_out(e: m.JobEvent, redact: Redactor | None = None) -> EventOut:
    """``e`` as the API answers it; ``redact``: as a caller who may not see every job
    its reason names reads it (``service.reason_views``)."""
    shown = (redact or Redactor()).reason(e.reason, e.phrases)
    return EventOut(
        at=e.at, from_state=e.from_state, to_state=e.to_state, code=e.code,
        reason=shown.text or "", phrases=_phrases(shown.phrases), attempt=e.attempt,
    )
