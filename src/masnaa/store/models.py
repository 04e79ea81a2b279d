"""Every table of the live service, and who writes which column.

Times are ``float`` UNIX seconds (the clock the service hands the core as
``now``); ``None`` means "not yet". Names (tenant, site, GPU type, node,
priority class) are unique and are what users type; integer ids are internal.

Writers — each column has one writer, so the API and the control loop never
fight over a value:

- **Tenancy** (``tenants``, ``projects``, ``users``, ``api_tokens``): the API
  (``service.tenancy``, ``service.tokens``), and the factory loader of
  ``masnaa up`` on bootstrap. ``api_tokens.last_used_at`` is touched by
  authentication.
- **Hardware and policy** (``sites``, ``gpu_types``, ``nodes``, ``quotas``,
  ``priority_classes``): the factory loader (TOML or discovery). The API
  writes only ``nodes.state``/``nodes.reason`` and ``sites.state`` for
  operator drain/undrain; the control loop writes ``nodes.state = down`` and
  ``sites.state = unreachable`` when it observes them.
- **Jobs**: the API writes a job on submit (every request column, ``state =
  pending``, ``submitted_at``, ``attempt = 0``) and on cancel (a pending job
  becomes ``cancelled`` at once; an admitted or running job gets
  ``cancel_requested = True`` and the loop stops it). The control loop writes
  everything about running: ``state`` after pending, ``state_reason``,
  ``attempt``, ``started_at``, ``ended_at``, ``exit_code``, ``placement``,
  ``site``, ``gpu_type``, ``executor_handle``, ``preempt_deadline``,
  ``wait_code``/``wait_message``/``estimated_start``, ``attained_service``,
  ``stdout_path``/``stderr_path``.
- **Job events**: whoever changes ``jobs.state`` writes one ``job_events`` row
  in the same transaction, with a reason. Preemption and requeue are events
  whose ``to_state`` is ``pending`` and whose ``code`` says ``preempted`` or
  ``requeued``; ``attempt`` then counts the runs so far.
- ``jobs.version`` is SQLAlchemy's version counter: every ORM update of a job
  checks and bumps it, so two writers racing on one job make the second fail
  with ``StaleDataError`` (retry after re-reading) instead of losing a write.
- ``service_state``: a small key/value table for the control loop (leases,
  heartbeats, cursors); the API only reads it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from masnaa.store.base import Base


class Role(StrEnum):
    OPERATOR = "operator"
    TENANT_ADMIN = "tenant-admin"
    MEMBER = "member"


class SiteState(StrEnum):
    UP = "up"
    DRAINED = "drained"
    UNREACHABLE = "unreachable"


class NodeState(StrEnum):
    UP = "up"
    DRAINED = "drained"
    DOWN = "down"


class JobState(StrEnum):
    PENDING = "pending"
    ADMITTED = "admitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset({JobState.ADMITTED, JobState.RUNNING})


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="university")
    country: Mapped[str] = mapped_column(String(2), default="MA")
    share: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[float] = mapped_column(Float)

    projects: Mapped[list[Project]] = relationship(back_populates="tenant")


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)

    tenant: Mapped[Tenant] = relationship(back_populates="projects")


class User(Base):
    """A person. ``tenant_id`` is ``None`` only for operators."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), default=None, index=True
    )
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER.value)
    created_at: Mapped[float] = mapped_column(Float)

    tenant: Mapped[Tenant | None] = relationship()


class ApiToken(Base):
    """A bearer token. Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    revoked_at: Mapped[float | None] = mapped_column(Float, default=None)
    last_used_at: Mapped[float | None] = mapped_column(Float, default=None)

    user: Mapped[User] = relationship()


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    country: Mapped[str] = mapped_column(String(2), default="MA")
    currency: Mapped[str] = mapped_column(String(3), default="MAD")
    executor: Mapped[str] = mapped_column(String(32), default="local")
    state: Mapped[str] = mapped_column(String(16), default=SiteState.UP.value)
    reason: Mapped[str] = mapped_column(Text, default="")


class GpuType(Base):
    __tablename__ = "gpu_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    memory_gb: Mapped[int] = mapped_column(Integer, default=80)
    vendor: Mapped[str] = mapped_column(String(32), default="nvidia")


class Node(Base):
    """One machine. ``domains`` is the topology path (JSON list), smallest first,
    ending with the site name. ``gpu_uuids`` lists the GPUs by index (NVML
    UUIDs, or labelled virtual ones when ``virtual`` is true)."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    gpu_type_id: Mapped[int] = mapped_column(ForeignKey("gpu_types.id"))
    gpu_count: Mapped[int] = mapped_column(Integer)
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    features: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default=NodeState.UP.value)
    reason: Mapped[str] = mapped_column(Text, default="")
    virtual: Mapped[bool] = mapped_column(Boolean, default=False)
    gpu_uuids: Mapped[list[str]] = mapped_column(JSON, default=list)

    site: Mapped[Site] = relationship()
    gpu_type: Mapped[GpuType] = relationship()


class Quota(Base):
    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("tenant_id", "site_id", "gpu_type_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    gpu_type_id: Mapped[int] = mapped_column(ForeignKey("gpu_types.id", ondelete="CASCADE"))
    nominal: Mapped[int] = mapped_column(Integer)
    borrowing_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    lending_limit: Mapped[int | None] = mapped_column(Integer, default=None)

    tenant: Mapped[Tenant] = relationship()
    site: Mapped[Site] = relationship()
    gpu_type: Mapped[GpuType] = relationship()


class PriorityClass(Base):
    __tablename__ = "priority_classes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    value: Mapped[int] = mapped_column(Integer)
    preemptible: Mapped[bool] = mapped_column(Boolean, default=True)
    can_preempt: Mapped[bool] = mapped_column(Boolean, default=True)
    grace_seconds: Mapped[float] = mapped_column(Float, default=120.0)
    tenants: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Names of the tenants whose jobs may use the class; empty: every tenant."""


class Job(Base):
    """A submitted job. See the module docstring for who writes which column."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_submitted_at", "state", "submitted_at"),
        Index("ix_jobs_tenant_id_state", "tenant_id", "state"),
        Index("ix_jobs_project_id", "project_id"),
        Index("ix_jobs_user_id_idempotency_key", "user_id", "idempotency_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    name: Mapped[str] = mapped_column(String(128), default="")
    # The request (written by the API on submit).
    command: Mapped[list[str]] = mapped_column(JSON, default=list)
    """argv; empty when ``script`` is given."""
    script: Mapped[str | None] = mapped_column(Text, default=None)
    """A shell script body run with ``/bin/sh``; ``None`` when ``command`` is given."""
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    workdir: Mapped[str | None] = mapped_column(Text, default=None)
    tasks: Mapped[int] = mapped_column(Integer, default=1)
    gpus_per_task: Mapped[int] = mapped_column(Integer, default=1)
    gpu_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Acceptable GPU types in preference order (never empty)."""
    time_limit: Mapped[float] = mapped_column(Float)
    priority_class: Mapped[str] = mapped_column(String(32), default="normal")
    sites: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    """Sites this job may run at; ``None``: any."""
    submitted_at: Mapped[float] = mapped_column(Float)
    # The lifecycle (pending set by the API; everything after by the control loop).
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING.value)
    state_reason: Mapped[str] = mapped_column(Text, default="")
    """Why the state last changed, in English (``masnaa.domain.reasons.english``)."""
    state_phrases: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """The same reason as phrases (``masnaa.domain.reasons.to_json``): what the portal
    renders in the reader's language. Empty for rows written before phrases existed."""
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[float | None] = mapped_column(Float, default=None)
    ended_at: Mapped[float | None] = mapped_column(Float, default=None)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    placement: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    """``[{"node": name, "gpus": [indices]}, ...]`` — one slice per node."""
    site: Mapped[str | None] = mapped_column(String(64), default=None)
    gpu_type: Mapped[str | None] = mapped_column(String(64), default=None)
    executor_handle: Mapped[str | None] = mapped_column(String(128), default=None)
    preempt_deadline: Mapped[float | None] = mapped_column(Float, default=None)
    wait_code: Mapped[str | None] = mapped_column(String(32), default=None)
    wait_message: Mapped[str | None] = mapped_column(Text, default=None)
    wait_phrases: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """``wait_message`` as phrases, like ``state_phrases``; empty where the words are a
    queuing engine's own (a Slurm pending reason)."""
    estimated_start: Mapped[float | None] = mapped_column(Float, default=None)
    attained_service: Mapped[float] = mapped_column(Float, default=0.0)
    """GPU-seconds received by earlier runs (fair share and LAS across restarts)."""
    stdout_path: Mapped[str | None] = mapped_column(Text, default=None)
    stderr_path: Mapped[str | None] = mapped_column(Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), default=None)
    """The submitter's ``Idempotency-Key``: one job per user and key (``service.submit_keys``)."""
    request_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    """SHA-256 of the request that created it, to tell a retry from a key reused."""
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012

    tenant: Mapped[Tenant] = relationship()
    project: Mapped[Project] = relationship()
    user: Mapped[User | None] = relationship()
    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )

    @property
    def total_gpus(self) -> int:
        return self.tasks * self.gpus_per_task


class JobEvent(Base):
    """One change of a job's state (or a notable transition such as a preemption)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[float] = mapped_column(Float)
    from_state: Mapped[str | None] = mapped_column(String(16), default=None)
    to_state: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(32), default="")
    """Machine-readable kind: submitted, admitted, started, succeeded, failed,
    cancelled, cancel-requested, preempted, requeued, lost, ..."""
    reason: Mapped[str] = mapped_column(Text, default="")
    """In English; ``phrases`` holds the same for other languages (see ``Job``)."""
    phrases: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    attempt: Mapped[int] = mapped_column(Integer, default=0)

    job: Mapped[Job] = relationship(back_populates="events")


class ServiceState(Base):
    """Key/value rows owned by the control loop (leases, heartbeats, cursors)."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[float] = mapped_column(Float)

from masnaa.store import accounting as _accounting_tables  # noqa: E402, F401  (registers them)
from masnaa.store import residency as _residency_tables  # noqa: E402, F401  (registers them)
