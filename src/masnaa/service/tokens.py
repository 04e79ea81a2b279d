"""API tokens: issuing, listing, revoking, and finding the caller behind one.

Tokens are ``msn_`` + 43 URL-safe characters (256 random bits). Only the
SHA-256 of the whole token is stored; the secret is shown once, at issue.
A token may expire (``expires_at``) and may be revoked; either makes it
invalid at once for this process and within ``TOKEN_CACHE_SECONDS`` for
other API workers. Who may issue, list or revoke whose tokens follows the
roles of ``service.tenancy``, with two limits on issuing:

- A tenant admin issues tokens for the tenant's plain members only: not for
  another tenant admin, nor for a reviewer (a factory-wide right an operator
  gave that person, which would let the admin read every tenant's allocations
  and review as them). Both are 403 ``token-needs-operator``.
- A token never issues one that outlives it: a token that expires issues only
  tokens that expire no later (422 ``token-outlives-parent``, naming the latest
  allowed expiry). Refused rather than silently shortened, so that a script
  never holds a token that dies before it expected. A token without expiry is
  not limited.

Every function takes the caller's session and does not commit: the caller
(an API route, ``masnaa up``) owns the transaction, so nothing is
half-written.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from masnaa.service.tenancy import Caller, ServiceError, forbidden, not_found
from masnaa.store import models as m

TOKEN_PREFIX = "msn_"
TOKEN_CACHE_SECONDS = 5.0
LAST_USED_GRANULARITY = 60.0
"""``last_used_at`` is rewritten at most once a minute per token: writing it on
every request would take SQLite's write lock for every read."""


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
        if not caller.is_operator:
            _check_within_tenant(session, user)
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise ServiceError(
            "invalid-ttl",
            f"a token's lifetime must be positive seconds, got {ttl_seconds}",
            field="ttl_seconds",
        )
    _check_not_outliving(session, caller, now, ttl_seconds)
    return issue_unchecked(session, user, now=now, ttl_seconds=ttl_seconds, label=label)


def _check_within_tenant(session: Session, user: m.User) -> None:
    """A tenant admin's token for ``user`` may carry no right beyond the tenant's."""
    from masnaa.store.accounting import ReviewerRow

    if m.Role(user.role) is m.Role.TENANT_ADMIN:
        held = "is a tenant admin too"
    elif session.scalars(select(ReviewerRow.step).where(ReviewerRow.user == user.name)).first():
        held = "is an allocation reviewer (a right over every tenant's requests)"
    else:
        return
    raise ServiceError(
        "token-needs-operator",
        f"{user.name!r} {held}: a tenant admin issues tokens only for the tenant's members; "
        "an operator issues theirs (their first one too); once they hold a token, they "
        "may issue their own with it",
        status=403,
        field="user",
    )


def _check_not_outliving(
    session: Session, caller: Caller, now: float, ttl_seconds: float | None
) -> None:
    """Refuse a token that would expire after the caller's own token."""
    parent = session.get(m.ApiToken, caller.token_id)
    if parent is None or parent.expires_at is None:
        return
    if ttl_seconds is not None and now + ttl_seconds <= parent.expires_at:
        return
    latest = datetime.fromtimestamp(parent.expires_at, UTC).isoformat(timespec="seconds")
    left = max(0, int(parent.expires_at - now))
    raise ServiceError(
        "token-outlives-parent",
        f"the token you call with expires at {latest}; a token it issues may not outlive it: "
        f"give ttl_seconds of at most {left}, or issue it with a token that does not expire",
        status=422,
        field="ttl_seconds",
    )


def issue_unchecked(
    session: Session, user: m.User, *, now: float, ttl_seconds: float | None, label: str
) -> IssuedToken:
    """A new token for ``user`` with no permission check: for ``issue_token`` once it
    has checked, and for bootstrap, which has no caller yet."""
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
            # A peer the caller sees (``GET /users`` lists them): may see, may not manage.
            raise forbidden("you may list only your own tokens")
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
