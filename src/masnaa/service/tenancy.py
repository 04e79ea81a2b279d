"""Tenancy: who is calling, what they may see, and the objects that say so.

Owns tenants, projects, users, quotas (read and set), sites and nodes as the
API sees them (read; drain and undrain), and bootstrap. API tokens are
``service.tokens``.

Terms and invariants:
- A **caller** is the user behind a valid token. Operators see everything;
  everyone else sees only their own tenant. An object of another tenant is
  reported as *not found* (never "forbidden"), so its existence does not leak.
- Roles: ``operator`` (no tenant; runs the factory), ``tenant-admin`` (manages
  its tenant's projects, users and tokens), ``member`` (submits jobs; reads
  its tenant's jobs, cancels its own).
- Every function takes the caller's session and does not commit: the caller
  (an API route, ``masnaa up``) owns the transaction, so nothing is
  half-written.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from masnaa.domain import TenantKind
from masnaa.domain.tenancy import DEFAULT_PRIORITY_CLASSES, MAX_SHARE
from masnaa.store import models as m

if TYPE_CHECKING:
    from masnaa.service.tokens import IssuedToken

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
NAME_RULE = (
    "1–64 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
)


class ServiceError(Exception):
    """A request the factory refuses: ``code`` is stable and machine-readable,
    ``message`` says what was wrong and what would be right."""

    status = 400

    def __init__(
        self, code: str, message: str, *, status: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        if status is not None:
            self.status = status


def check_country(code: str, field: str = "country") -> str:
    """``code`` when it is an ISO 3166 alpha-2 code (two capital letters), else
    ``invalid-country`` naming ``field``. Whether the residency rules know the
    country is ``service.residency``'s question."""
    if not re.fullmatch(r"[A-Z]{2}", code):
        raise ServiceError(
            "invalid-country",
            f"{field} {code!r} must be an ISO 3166 alpha-2 code such as 'MA' or 'KE'",
            field=field,
        )
    return code


def not_found(kind: str, name: str) -> ServiceError:
    return ServiceError(
        f"{kind}-not-found",
        f"no {kind} named {name!r} is visible to you; check the name (list them to see yours)",
        status=404,
    )


def forbidden(message: str) -> ServiceError:
    return ServiceError("forbidden", message, status=403)


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    user: str
    role: m.Role
    tenant_id: int | None
    tenant: str | None
    token_id: int

    @property
    def is_operator(self) -> bool:
        return self.role is m.Role.OPERATOR

    def admin_of(self, tenant_id: int) -> bool:
        return self.is_operator or (
            self.role is m.Role.TENANT_ADMIN and self.tenant_id == tenant_id
        )

    def sees_tenant(self, tenant_id: int) -> bool:
        return self.is_operator or self.tenant_id == tenant_id


def require_operator(caller: Caller, doing: str) -> None:
    """Refuse (403 ``forbidden``, "only operators <doing>") anyone but an operator."""
    if not caller.is_operator:
        raise forbidden(f"only operators {doing}")


# --- names -----------------------------------------------------------------


def check_name(value: str, field: str) -> str:
    if not NAME_RE.match(value):
        raise ServiceError(
            "invalid-name", f"{field} {value!r} is not a valid name: use {NAME_RULE}", field=field
        )
    return value


# --- tenants, projects, users ------------------------------------------------


def get_tenant(session: Session, caller: Caller, name: str) -> m.Tenant:
    tenant = session.scalars(select(m.Tenant).where(m.Tenant.name == name)).first()
    if tenant is None or not caller.sees_tenant(tenant.id):
        raise not_found("tenant", name)
    return tenant


def list_tenants(session: Session, caller: Caller) -> list[m.Tenant]:
    stmt = select(m.Tenant).order_by(m.Tenant.name)
    if not caller.is_operator:
        stmt = stmt.where(m.Tenant.id == caller.tenant_id)
    return list(session.scalars(stmt))


def _unique(session: Session, what: str, name: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise ServiceError(
            f"{what}-exists",
            f"a {what} named {name!r} already exists: pick another name",
            status=409,
            field="name",
        ) from exc


def create_tenant(
    session: Session,
    caller: Caller,
    *,
    name: str,
    kind: str = "university",
    country: str = "MA",
    share: float = 1.0,
    now: float,
) -> m.Tenant:
    require_operator(caller, "create tenants")
    check_name(name, "name")
    try:
        TenantKind(kind)
    except ValueError:
        raise ServiceError(
            "invalid-tenant-kind",
            f"kind {kind!r} is not known: use one of {', '.join(k.value for k in TenantKind)}",
            field="kind",
        ) from None
    check_country(country)
    if not 0 <= share <= MAX_SHARE:
        raise ServiceError(
            "invalid-share",
            f"share must be between 0 and {MAX_SHARE:g} (a weight relative to the other "
            f"tenants' shares), got {share:g}",
            field="share",
        )
    tenant = m.Tenant(name=name, kind=kind, country=country, share=share, created_at=now)
    session.add(tenant)
    _unique(session, "tenant", name)
    return tenant


def get_project(session: Session, caller: Caller, ref: str) -> m.Project:
    """A project by ``name`` (in the caller's tenant) or ``tenant/name``."""
    tenant_name, _, name = ref.rpartition("/")
    stmt = select(m.Project).join(m.Tenant, m.Project.tenant_id == m.Tenant.id)
    stmt = stmt.where(m.Project.name == name)
    if tenant_name:
        stmt = stmt.where(m.Tenant.name == tenant_name)
    elif not caller.is_operator:
        stmt = stmt.where(m.Project.tenant_id == caller.tenant_id)
    found = [p for p in session.scalars(stmt) if caller.sees_tenant(p.tenant_id)]
    if not found:
        raise not_found("project", ref)
    if len(found) > 1:
        raise ServiceError(
            "ambiguous-project",
            f"several tenants have a project named {name!r}: write it as 'tenant/{name}'",
            field="project",
        )
    return found[0]


def list_projects(session: Session, caller: Caller, tenant: str | None = None) -> list[m.Project]:
    stmt = select(m.Project).join(m.Tenant, m.Project.tenant_id == m.Tenant.id)
    if tenant is not None:
        stmt = stmt.where(m.Project.tenant_id == get_tenant(session, caller, tenant).id)
    elif not caller.is_operator:
        stmt = stmt.where(m.Project.tenant_id == caller.tenant_id)
    return list(session.scalars(stmt.order_by(m.Tenant.name, m.Project.name)))


def _target_tenant(session: Session, caller: Caller, tenant: str | None) -> m.Tenant:
    if tenant is None:
        if caller.tenant_id is None:
            raise ServiceError(
                "tenant-required", "operators must name the tenant (field 'tenant')", field="tenant"
            )
        found = session.get(m.Tenant, caller.tenant_id)
        assert found is not None
        return found
    return get_tenant(session, caller, tenant)


def create_project(
    session: Session, caller: Caller, *, name: str, tenant: str | None, now: float
) -> m.Project:
    owner = _target_tenant(session, caller, tenant)
    if not caller.admin_of(owner.id):
        raise forbidden("only a tenant admin or an operator creates projects")
    check_name(name, "name")
    project = m.Project(tenant_id=owner.id, name=name, created_at=now)
    session.add(project)
    _unique(session, "project", name)
    return project


def list_users(session: Session, caller: Caller, tenant: str | None = None) -> list[m.User]:
    stmt = select(m.User)
    if tenant is not None:
        stmt = stmt.where(m.User.tenant_id == get_tenant(session, caller, tenant).id)
    elif not caller.is_operator:
        stmt = stmt.where(m.User.tenant_id == caller.tenant_id)
    return list(session.scalars(stmt.order_by(m.User.name)))


def create_user(
    session: Session,
    caller: Caller,
    *,
    name: str,
    role: str = "member",
    tenant: str | None = None,
    email: str | None = None,
    now: float,
) -> m.User:
    try:
        wanted = m.Role(role)
    except ValueError:
        raise ServiceError(
            "invalid-role",
            f"role {role!r} is not known: use one of {', '.join(r.value for r in m.Role)}",
            field="role",
        ) from None
    check_name(name, "name")
    if wanted is m.Role.OPERATOR:
        require_operator(caller, "create operators")
        if tenant is not None:
            raise ServiceError(
                "operator-has-no-tenant",
                "an operator belongs to no tenant: omit 'tenant'",
                field="tenant",
            )
        tenant_id = None
    else:
        owner = _target_tenant(session, caller, tenant)
        if not caller.admin_of(owner.id):
            raise forbidden("only a tenant admin or an operator creates users")
        tenant_id = owner.id
    user = m.User(name=name, role=wanted.value, tenant_id=tenant_id, email=email, created_at=now)
    session.add(user)
    _unique(session, "user", name)
    return user


# --- hardware and quotas -----------------------------------------------------


def list_sites(session: Session) -> list[m.Site]:
    return list(session.scalars(select(m.Site).order_by(m.Site.name)))


def list_nodes(session: Session, site: str | None = None) -> list[m.Node]:
    stmt = select(m.Node).join(m.Site, m.Node.site_id == m.Site.id)
    if site is not None:
        stmt = stmt.where(m.Site.name == site)
    return list(session.scalars(stmt.order_by(m.Node.name)))


def set_node_state(
    session: Session, caller: Caller, node_name: str, *, drained: bool, reason: str
) -> m.Node:
    """The node's state alone; ``service.evacuation`` also moves its runs and audits it."""
    require_operator(caller, "drain or undrain nodes")
    node = session.scalars(select(m.Node).where(m.Node.name == node_name).with_for_update()).first()
    if node is None:
        raise not_found("node", node_name)
    if drained:
        if node.state == m.NodeState.UP.value:
            node.state = m.NodeState.DRAINED.value
            node.reason = reason or "drained by an operator"
    elif node.state == m.NodeState.DRAINED.value:
        node.state = m.NodeState.UP.value
        node.reason = reason
    return node


def list_quotas(session: Session, caller: Caller, tenant: str | None = None) -> list[m.Quota]:
    stmt = select(m.Quota).join(m.Tenant, m.Quota.tenant_id == m.Tenant.id)
    if tenant is not None:
        stmt = stmt.where(m.Quota.tenant_id == get_tenant(session, caller, tenant).id)
    elif not caller.is_operator:
        stmt = stmt.where(m.Quota.tenant_id == caller.tenant_id)
    return list(session.scalars(stmt.order_by(m.Tenant.name, m.Quota.id)))


def set_quota(
    session: Session,
    caller: Caller,
    *,
    tenant: str,
    site: str,
    gpu_type: str,
    nominal: int,
    borrowing_limit: int | None,
    lending_limit: int | None,
) -> m.Quota:
    require_operator(caller, "set quotas")
    owner = get_tenant(session, caller, tenant)
    site_row = session.scalars(select(m.Site).where(m.Site.name == site)).first()
    if site_row is None:
        raise ServiceError("unknown-site", f"site {site!r} is not declared", field="site")
    type_row = session.scalars(select(m.GpuType).where(m.GpuType.name == gpu_type)).first()
    if type_row is None:
        raise ServiceError(
            "unknown-gpu-type", f"GPU type {gpu_type!r} is not declared", field="gpu_type"
        )
    for label, value in (
        ("nominal", nominal),
        ("borrowing_limit", borrowing_limit),
        ("lending_limit", lending_limit),
    ):
        if value is not None and value < 0:
            raise ServiceError("invalid-quota", f"{label} must be ≥ 0, got {value}", field=label)
    quota = session.scalars(
        select(m.Quota).where(
            m.Quota.tenant_id == owner.id,
            m.Quota.site_id == site_row.id,
            m.Quota.gpu_type_id == type_row.id,
        )
    ).first()
    if quota is None:
        quota = m.Quota(tenant_id=owner.id, site_id=site_row.id, gpu_type_id=type_row.id, nominal=0)
        session.add(quota)
    quota.nominal = nominal
    quota.borrowing_limit = borrowing_limit
    quota.lending_limit = lending_limit
    session.flush()
    return quota


# --- bootstrap -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bootstrap:
    operator: str
    token: IssuedToken | None
    """The new operator's token; ``None`` when the factory was already bootstrapped."""
    tenant: str | None
    """The default tenant (``None``: the factory declares its own)."""
    project: str


def bootstrap(
    session: Session,
    *,
    now: float | None = None,
    operator: str = "operator",
    tenant: str | None = "local",
    project: str = "default",
) -> Bootstrap:
    """First run of a factory: an operator with a token, a default tenant and
    project (so the operator can submit at once; ``tenant=None``: none, for a factory
    that declares its own tenants), and the default priority classes. Idempotent: a
    factory with an operator gets nothing new."""
    # Not at module level: tokens imports Caller and ServiceError from here.
    from masnaa.service.tokens import issue_unchecked

    now = time.time() if now is None else now
    existing = session.scalars(
        select(m.User).where(m.User.role == m.Role.OPERATOR.value).order_by(m.User.id)
    ).first()
    if existing is not None:
        return Bootstrap(existing.name, None, tenant, project)
    user = m.User(name=operator, role=m.Role.OPERATOR.value, created_at=now)
    session.add(user)
    if tenant is not None:
        _default_project(session, tenant, project, now)
    ensure_priority_classes(session)
    session.flush()
    issued = issue_unchecked(session, user, now=now, ttl_seconds=None, label="bootstrap")
    return Bootstrap(user.name, issued, tenant, project)


def _default_project(session: Session, tenant: str, project: str, now: float) -> None:
    owner = session.scalars(select(m.Tenant).where(m.Tenant.name == tenant)).first()
    if owner is None:
        owner = m.Tenant(name=tenant, kind="public-body", created_at=now)
        session.add(owner)
        session.flush()
    if (
        session.scalars(
            select(m.Project).where(m.Project.tenant_id == owner.id, m.Project.name == project)
        ).first()
        is None
    ):
        session.add(m.Project(tenant_id=owner.id, name=project, created_at=now))


def ensure_priority_classes(session: Session) -> None:
    """Declare the default priority classes when none are declared."""
    if session.scalars(select(m.PriorityClass.id)).first() is not None:
        return
    for p in DEFAULT_PRIORITY_CLASSES:
        session.add(
            m.PriorityClass(
                name=p.name,
                value=p.value,
                preemptible=p.preemptible,
                can_preempt=p.can_preempt,
                grace_seconds=p.grace_seconds,
            )
        )
