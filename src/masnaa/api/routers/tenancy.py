"""``/api/v1/whoami``, ``tenants``, ``projects``, ``users`` and ``tokens``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.api.deps import CurrentCaller, State, forbid_unknown_query
from masnaa.api.errors import ERROR_RESPONSES
from masnaa.api.schemas import (
    MAX_INT,
    ProjectIn,
    ProjectOut,
    TenantIn,
    TenantOut,
    TokenIn,
    TokenIssued,
    TokenOut,
    UserIn,
    UserOut,
    WhoAmI,
)
from masnaa.service import tenancy as svc
from masnaa.service import tokens
from masnaa.store import models as m

router = APIRouter(tags=["tenancy"], responses=ERROR_RESPONSES,
                   dependencies=[Depends(forbid_unknown_query)])


def _tenant_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(m.Tenant.id, m.Tenant.name)).all())


def _tenant_out(t: m.Tenant) -> TenantOut:
    return TenantOut(
        name=t.name, kind=t.kind, country=t.country, share=t.share, created_at=t.created_at
    )


def _user_out(u: m.User, tenants: dict[int, str]) -> UserOut:
    return UserOut(
        name=u.name,
        role=u.role,
        tenant=tenants.get(u.tenant_id) if u.tenant_id is not None else None,
        email=u.email,
        created_at=u.created_at,
    )


def _token_out(t: m.ApiToken, user: str) -> TokenOut:
    return TokenOut(
        id=t.id, user=user, prefix=t.prefix, label=t.label, created_at=t.created_at,
        expires_at=t.expires_at, revoked_at=t.revoked_at, last_used_at=t.last_used_at,
    )


@router.get("/whoami", response_model=WhoAmI, summary="The caller")
def whoami(caller: CurrentCaller) -> WhoAmI:
    return WhoAmI.of(caller)


@router.get("/tenants", response_model=list[TenantOut], summary="Tenants you can see")
def list_tenants(state: State, caller: CurrentCaller) -> list[TenantOut]:
    with state.db.read() as session:
        return [_tenant_out(t) for t in svc.list_tenants(session, caller)]


@router.post("/tenants", status_code=201, response_model=TenantOut, summary="Create a tenant")
def create_tenant(body: TenantIn, state: State, caller: CurrentCaller) -> TenantOut:
    with state.db.write() as session:
        tenant = svc.create_tenant(
            session, caller, name=body.name, kind=body.kind, country=body.country,
            share=body.share, now=state.now(),
        )
        return _tenant_out(tenant)


@router.get("/tenants/{name}", response_model=TenantOut, summary="One tenant")
def get_tenant(name: str, state: State, caller: CurrentCaller) -> TenantOut:
    with state.db.read() as session:
        return _tenant_out(svc.get_tenant(session, caller, name))


@router.get("/projects", response_model=list[ProjectOut], summary="Projects you can see")
def list_projects(
    state: State, caller: CurrentCaller, tenant: str | None = None
) -> list[ProjectOut]:
    with state.db.read() as session:
        names = _tenant_names(session)
        return [
            ProjectOut(name=p.name, tenant=names[p.tenant_id], created_at=p.created_at)
            for p in svc.list_projects(session, caller, tenant)
        ]


@router.post("/projects", status_code=201, response_model=ProjectOut, summary="Create a project")
def create_project(body: ProjectIn, state: State, caller: CurrentCaller) -> ProjectOut:
    with state.db.write() as session:
        p = svc.create_project(session, caller, name=body.name, tenant=body.tenant, now=state.now())
        return ProjectOut(name=p.name, tenant=_tenant_names(session)[p.tenant_id],
                          created_at=p.created_at)


@router.get("/users", response_model=list[UserOut], summary="Users you can see")
def list_users(state: State, caller: CurrentCaller, tenant: str | None = None) -> list[UserOut]:
    with state.db.read() as session:
        names = _tenant_names(session)
        return [_user_out(u, names) for u in svc.list_users(session, caller, tenant)]


@router.post("/users", status_code=201, response_model=UserOut, summary="Create a user")
def create_user(body: UserIn, state: State, caller: CurrentCaller) -> UserOut:
    with state.db.write() as session:
        u = svc.create_user(
            session, caller, name=body.name, role=body.role, tenant=body.tenant,
            email=body.email, now=state.now(),
        )
        return _user_out(u, _tenant_names(session))


@router.get("/tokens", response_model=list[TokenOut], summary="Tokens you manage")
def list_tokens(state: State, caller: CurrentCaller, user: str | None = None) -> list[TokenOut]:
    with state.db.read() as session:
        users = dict(session.execute(select(m.User.id, m.User.name)).all())
        return [_token_out(t, users[t.user_id]) for t in tokens.list_tokens(session, caller, user)]


@router.post("/tokens", status_code=201, response_model=TokenIssued, summary="Issue a token")
def issue_token(body: TokenIn, state: State, caller: CurrentCaller) -> TokenIssued:
    with state.db.write() as session:
        issued = tokens.issue_token(
            session, caller, body.user, now=state.now(), ttl_seconds=body.ttl_seconds,
            label=body.label,
        )
        row = session.get(m.ApiToken, issued.id)
        assert row is not None
        return TokenIssued(**_token_out(row, issued.user).model_dump(), token=issued.secret)


@router.post("/tokens/{token_id}/revoke", response_model=TokenOut, summary="Revoke a token")
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=MAX_INT)], state: State, caller: CurrentCaller
) -> TokenOut:
    with state.db.write() as session:
        t = tokens.revoke_token(session, caller, token_id, now=state.now())
        user = session.get(m.User, t.user_id)
        assert user is not None
        return _token_out(t, user.name)
