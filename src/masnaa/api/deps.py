"""Per-request plumbing: the app's database, the clock, and the authenticated caller.

Each route opens exactly one transaction: ``db.write()`` (SQLite: ``BEGIN
IMMEDIATE``) for anything that changes rows, ``db.read()`` for reads. Leaving
the ``with`` block commits; an exception rolls everything back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from masnaa.api.batcher import SubmitBatcher
from masnaa.api.settings import Settings
from masnaa.service.metrics import Metrics
from masnaa.service.tenancy import Caller, ServiceError
from masnaa.service.tokens import TOKEN_CACHE, authenticate, hash_token, touch_token


@dataclass
class Database:
    engine: Engine
    writer: sessionmaker[Session]
    reader: sessionmaker[Session]
    _write_lock: threading.Lock | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # SQLite has one writer at a time, and a writer that finds the lock taken
        # sleeps in growing steps (SQLite's busy handler): under load that is
        # most of the tail latency. Threads of this process queue on a mutex
        # instead, so the lock passes on at once; other processes still wait
        # on the busy timeout.
        if self.engine.dialect.name == "sqlite":
            self._write_lock = threading.Lock()

    @contextmanager
    def write(self) -> Iterator[Session]:
        if self._write_lock is None:
            with self.writer.begin() as session:
                yield session
            return
        with self._write_lock, self.writer.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.reader() as session, session.begin():
            yield session


@dataclass
class AppState:
    settings: Settings
    db: Database
    metrics: Metrics
    batcher: SubmitBatcher

    def now(self) -> float:
        return self.settings.clock()


async def app_state(request: Request) -> AppState:
    # async: FastAPI would run a plain function in its thread pool (a thread
    # hop per dependency per request); this one does no IO.
    return state_of(request)


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.masnaa
    return state


_bearer = HTTPBearer(auto_error=False, description="An API token: `Bearer msn_...`")


def _authenticate(state: AppState, secret: str | None, now: float) -> Caller:
    with state.db.read() as session:
        caller, stale = authenticate(session, secret, now)
    if stale:
        with state.db.write() as session:
            touch_token(session, caller.token_id, now)
    return caller


async def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller; a recently seen token is answered from memory, without a thread hop."""
    secret = credentials.credentials if credentials is not None else None
    return await caller_for(request, secret)


def bearer_secret(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (what ``HTTPBearer`` reads),
    for hot routes that skip the dependency machinery."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    return secret.strip() or None if scheme.lower() == "bearer" else None


async def caller_for(request: Request, secret: str | None) -> Caller:
    state = state_of(request)
    now = state.now()
    if secret:
        cached = TOKEN_CACHE.get(hash_token(secret), now)
        if cached is not None:
            return cached
    return await run_in_threadpool(_authenticate, state, secret, now)


def _query_names(dependant: Any) -> Iterator[str]:
    yield from (p.alias for p in dependant.query_params)
    for sub in dependant.dependencies:
        yield from _query_names(sub)


async def forbid_unknown_query(request: Request) -> None:
    """Unknown query parameters are an error, as unknown body fields are: a
    misspelt filter must not silently list everything."""
    check_query(request)


def check_query(request: Request) -> None:
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = set(_query_names(dependant))
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise ServiceError(
            "invalid-request",
            f"unknown query parameter {unknown[0]!r}: this endpoint accepts {accepted}",
            status=422,
            field=unknown[0],
        )


State = Annotated[AppState, Depends(app_state)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
Clock = Callable[[], float]
