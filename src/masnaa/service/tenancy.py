"""Tenancy: who is calling, what they may see, and the objects that say so.

Owns tenants, projects, users, API tokens, quotas (read and set), sites and
nodes as the API sees them (read; drain and undrain), and bootstrap.

Terms and invariants:
- A **caller** is the user behind a valid token. Operators see everything;
  everyone else sees only their own tenant. An object of another tenant is
  reported as *not found* (never "forbidden"), so its existence does not leak.
- Roles: ``operator`` (no tenant; runs the factory), ``tenant-admin`` (manages
  its tenant's projects, users and tokens), ``member`` (submits jobs; reads
  its tenant's jobs, cancels its own).
- Tokens are ``msn_`` + 43 URL-safe characters (256 random bits). Only the
  SHA-256 of the whole token is stored; the secret is shown once, at issue.
  A token may expire (``expires_at``) and may be revoked; either makes it
  invalid at once for this process and within ``TOKEN_CACHE_SECONDS`` for
  other API workers.
- Every function takes the caller's session and does not commit: the caller
  (an API route, ``masnaa up``) owns the transaction, so nothing is
  half-written.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from masnaa.domain import TenantKind
from masnaa.domain.tenancy import DEFAULT_PRIORITY_CLASSES
from masnaa.store import models as m

TOKEN_PREFIX = "msn_"
TOKEN_CACHE_SECONDS = 5.0
LAST_USED_GRANULARITY = 60.0
"""``last_used_at`` is rewritten at most once a minute per token: writing it on
every request would take SQLite's write lock for every read."""
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


# --- names -----------------------------------------------------------------


def check_name(value: str, field: str) -> str:
    if not NAME_RE.match(value):
        raise ServiceError(
            "invalid-name", f"{field} {value!r} is not a valid name: use {NAME_RULE}", field=field
        )
    return value


# --- tokens ----------------------------------------------------------------


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: int
    secret: str
    prefix: str
    user: str
    expires_at: float | None


class _TokenCache:
    """Recently authenticated tokens, so a request need not read the database twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Caller, float | None]] = {}

    def get(self, digest: str, now: float) -> Caller | None:
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None:
            return None
        cached_at, caller, expires_at = entry
        if now - cached_at > TOKEN_CACHE_SECONDS or (expires_at is not None and now >= expires_at):
            return None
        return caller

    def put(self, digest: str, caller: Caller, expires_at: float | None, now: float) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (now, caller, expires_at)

    def forget_token(self, token_id: int) -> None:
        with self._lock:
            for digest in [d for d, (_, c, _) in self._entries.items() if c.token_id == token_id]:
                del self._entries[digest]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


TOKEN_CACHE = _TokenCache()


def _invalid_token(message: str) -> ServiceError:
    return ServiceError("invalid-token", message, status=401)


def authenticate(session: Session, secret: str | None, now: float) -> tuple[Caller, bool]:
    """The caller behind ``secret`` (or ``invalid-token``, 401), and whether its
    ``last_used_at`` is stale enough to rewrite (``touch_token``). Reads only."""
    if not secret:
        raise _invalid_token(
            "no API token: send the header 'Authorization: Bearer <token>' "
            "(`masnaa up` prints the first operator's token)"
        )
    digest = hash_token(secret)
    cached = TOKEN_CACHE.get(digest, now)
    if cached is not None:
        return cached, False
    row = session.execute(
        select(m.ApiToken, m.User, m.Tenant)
        .join(m.User, m.ApiToken.user_id == m.User.id)
        .outerjoin(m.Tenant, m.User.tenant_id == m.Tenant.id)
        .where(m.ApiToken.token_hash == digest)
    ).first()
    if row is None:
        raise _invalid_token("this API token is not known: check it, or ask for a new one")
    token, user, tenant = row
    if token.revoked_at is not None:
        raise _invalid_token("this API token was revoked: ask your tenant admin for a new one")
    if token.expires_at is not None and now >= token.expires_at:
        raise _invalid_token("this API token has expired: ask your tenant admin for a new one")
    caller = Caller(
        user_id=user.id,
        user=user.name,
        role=m.Role(user.role),
        tenant_id=user.tenant_id,
        tenant=tenant.name if tenant is not None else None,
        token_id=token.id,
    )
    TOKEN_CACHE.put(digest, caller, token.expires_at, now)
    stale = token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY
    return caller, stale


def touch_token(session: Session, token_id: int, now: float) -> None:
    session.execute(update(m.ApiToken).where(m.ApiToken.id == token_id).values(last_used_at=now))


def _user_in_scope(session: Session, caller: Caller, name: str) -> m.User:
    user = session.scalars(select(m.User).where(m.User.name == name)).first()
    if user is None:
        raise not_found("user", name)
    if user.id == caller.user_id or caller.is_operator:
        return user
    if user.tenant_id is not None and caller.sees_tenant(user.tenant_id):
        return user
    raise not_found("user", name)


def issue_token(
    session: Session,
    caller: Caller,
    user_name: str | None,
    *,
    now: float,
    ttl_seconds: float | None = None,
    label: str = "",
) -> IssuedToken:
    """A new token for ``user_name`` (default: the caller). Members may issue
    tokens only for themselves; admins for their tenant's users."""
    user = _user_in_scope(session, caller, user_name or caller.user)
    if user.id != caller.user_id:
        if user.tenant_id is None and not caller.is_operator:
            raise not_found("user", user.name)
        if user.tenant_id is not None and not caller.admin_of(user.tenant_id):
            raise forbidden("only a tenant admin or an operator may issue tokens for other users")
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise ServiceError(
            "invalid-ttl",
            f"a token's lifetime must be positive seconds, got {ttl_seconds}",
            field="ttl_seconds",
        )
    return _issue(session, user, now=now, ttl_seconds=ttl_seconds, label=label)


def _issue(
    session: Session, user: m.User, *, now: float, ttl_seconds: float | None, label: str
) -> IssuedToken:
    secret = new_secret()
    token = m.ApiToken(
        user_id=user.id,
        token_hash=hash_token(secret),
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        label=label,
        created_at=now,
        expires_at=now + ttl_seconds if ttl_seconds is not None else None,
    )
    session.add(token)
    session.flush()
    return IssuedToken(token.id, secret, token.prefix, user.name, token.expires_at)


def list_tokens(session: Session, caller: Caller, user_name: str | None = None) -> list[m.ApiToken]:
    """Tokens the caller may manage: their own; a tenant admin's tenant; all for operators."""
    stmt = select(m.ApiToken).join(m.User, m.ApiToken.user_id == m.User.id)
    if user_name is not None:
        user = _user_in_scope(session, caller, user_name)
        if user.id != caller.user_id and not (
            caller.is_operator or (user.tenant_id is not None and caller.admin_of(user.tenant_id))
        ):
            raise not_found("user", user_name)
        stmt = stmt.where(m.ApiToken.user_id == user.id)
    elif caller.role is m.Role.TENANT_ADMIN:
        stmt = stmt.where(m.User.tenant_id == caller.tenant_id)
    elif not caller.is_operator:
        stmt = stmt.where(m.ApiToken.user_id == caller.user_id)
    return list(session.scalars(stmt.order_by(m.ApiToken.id)))


def revoke_token(session: Session, caller: Caller, token_id: int, *, now: float) -> m.ApiToken:
    token = session.get(m.ApiToken, token_id)
    if token is None:
        raise not_found("token", str(token_id))
    owner = session.get(m.User, token.user_id)
    assert owner is not None
    allowed = (
        owner.id == caller.user_id
        or caller.is_operator
        or (owner.tenant_id is not None and caller.admin_of(owner.tenant_id))
    )
    if not allowed:
        raise not_found("token", str(token_id))
    if token.revoked_at is None:
        token.revoked_at = now
    TOKEN_CACHE.forget_token(token.id)
    return token


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
    if not caller.is_operator:
        raise forbidden("only operators create tenants")
    check_name(name, "name")
    try:
        TenantKind(kind)
    except ValueError:
        raise ServiceError(
            "invalid-tenant-kind",
            f"kind {kind!r} is not known: use one of {', '.join(k.value for k in TenantKind)}",
            field="kind",
        ) from None
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ServiceError(
            "invalid-country",
            f"country {country!r} must be an ISO 3166 alpha-2 code such as 'MA' or 'KE'",
            field="country",
        )
    if share < 0:
        raise ServiceError("invalid-share", f"share must be ≥ 0, got {share}", field="share")
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
        if not caller.is_operator:
            raise forbidden("only operators create operators")
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
    if not caller.is_operator:
        raise forbidden("only operators drain or undrain nodes")
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
    if not caller.is_operator:
        raise forbidden("only operators set quotas")
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
    tenant: str
    project: str


def bootstrap(
    session: Session,
    *,
    now: float | None = None,
    operator: str = "operator",
    tenant: str = "local",
    project: str = "default",
) -> Bootstrap:
    """First run of a factory: an operator with a token, a default tenant and
    project (so the operator can submit at once), and the default priority
    classes. Idempotent: a factory with an operator gets nothing new."""
    now = time.time() if now is None else now
    existing = session.scalars(
        select(m.User).where(m.User.role == m.Role.OPERATOR.value).order_by(m.User.id)
    ).first()
    if existing is not None:
        return Bootstrap(existing.name, None, tenant, project)
    user = m.User(name=operator, role=m.Role.OPERATOR.value, created_at=now)
    session.add(user)
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
    ensure_priority_classes(session)
    session.flush()
    issued = _issue(session, user, now=now, ttl_seconds=None, label="bootstrap")
    return Bootstrap(user.name, issued, tenant, project)


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
