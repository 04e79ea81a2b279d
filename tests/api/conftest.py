"""A real API server on loopback, a fresh world per test, on SQLite and PostgreSQL.

- ``server`` (one per backend and session): ``create_app`` under a real
  ``uvicorn.Server`` in a thread, on a free port.
- ``world`` (per test): wipes the database and builds a small factory —
  two sites, three nodes, two tenants with two projects each, and in each
  tenant a tenant admin and two members, plus an operator — each with a
  token and an ``httpx.Client`` ready to call the API as that person.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from masnaa.api import Settings, create_app
from masnaa.api.deps import AppState
from masnaa.service import tenancy
from masnaa.service.jobs import invalidate_caches
from masnaa.service.tenancy import Caller
from masnaa.service.tokens import TOKEN_CACHE, issue_token
from masnaa.store import models as m
from masnaa.store.db import make_engine
from masnaa.store.testing import postgres_url, scratch_database, wipe

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(postgres_url() is None, reason="MASNAA_TEST_POSTGRES_URL unset"),
        ],
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    state: AppState
    home: Path
    http: httpx.Client


class As:
    """Calls the API as one person, over the server's shared connection pool
    (an ``httpx.Client`` each would cost an SSL context per person per test)."""

    def __init__(self, http: httpx.Client, token: str | None) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"} if token is not None else {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    with scratch_database(request.param, home) as url:
        engine = make_engine(url, pool_size=20)
        settings = Settings(db_url=url, home=home, log_dir=home / "logs", migrate=False)
        app = create_app(settings, engine=engine)
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="on")
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not srv.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=base, timeout=30)
        try:
            yield Server(base, app.state.masnaa, home, http)
        finally:
            http.close()
            srv.should_exit = True
            thread.join(timeout=10)
            engine.dispose()


@dataclass
class Person:
    name: str
    role: str
    tenant: str | None
    token: str
    client: As


@dataclass
class World:
    server: Server
    people: dict[str, Person] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Person:
        return self.people[name]

    def client(self, token: str | None) -> As:
        return As(self.server.http, token)

    def submit(self, who: str, **spec: object) -> dict[str, object]:
        body = {"command": ["true"], **spec}
        r = self[who].client.post("/api/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def set_job(self, job_id: str, **values: object) -> None:
        """Write columns as the control loop would (tests only)."""
        with self.server.state.db.write() as s:
            job = s.get(m.Job, job_id)
            assert job is not None
            for k, v in values.items():
                setattr(job, k, v)


def _seed(state: AppState) -> dict[str, tuple[str, str | None, str]]:
    """Create the standard factory; return name → (role, tenant, token secret)."""
    now = time.time()
    out: dict[str, tuple[str, str | None, str]] = {}
    with state.db.write() as s:
        boot = tenancy.bootstrap(s, now=now, operator="ops")
        assert boot.token is not None
        out["ops"] = ("operator", None, boot.token.secret)
        ma = m.Site(name="ma-1", country="MA", currency="MAD")
        ke = m.Site(name="ke-1", country="KE", currency="KES")
        h100 = m.GpuType(name="h100-sxm-80gb")
        a100 = m.GpuType(name="a100-80gb")
        s.add_all([ma, ke, h100, a100])
        s.flush()
        s.add_all([
            m.Node(site_id=ma.id, name="ma-n0", gpu_type_id=h100.id, gpu_count=8,
                   domains=["nvl0", "leaf0"]),
            m.Node(site_id=ma.id, name="ma-n1", gpu_type_id=h100.id, gpu_count=8,
                   domains=["nvl1", "leaf0"]),
            m.Node(site_id=ke.id, name="ke-n0", gpu_type_id=a100.id, gpu_count=4,
                   domains=["nvl0", "leaf0"]),
        ])
        op = Caller(user_id=0, user="ops", role=m.Role.OPERATOR, tenant_id=None, tenant=None,
                    token_id=0)
        for tenant, country in (("um6p", "MA"), ("uon", "KE")):
            tenancy.create_tenant(s, op, name=tenant, kind="university", country=country, now=now)
            for project in ("llm", "vision"):
                tenancy.create_project(s, op, name=project, tenant=tenant, now=now)
            for user, role in ((f"{tenant}-admin", "tenant-admin"), (f"{tenant}-alice", "member"),
                               (f"{tenant}-bob", "member")):
                tenancy.create_user(s, op, name=user, role=role, tenant=tenant, now=now)
                issued = issue_token(s, op, user, now=now)
                out[user] = (role, tenant, issued.secret)
        tenancy.set_quota(s, op, tenant="um6p", site="ma-1", gpu_type="h100-sxm-80gb",
                          nominal=8, borrowing_limit=None, lending_limit=None)
        tenancy.set_quota(s, op, tenant="uon", site="ke-1", gpu_type="a100-80gb",
                          nominal=4, borrowing_limit=None, lending_limit=None)
    return out


@pytest.fixture
def world(server: Server) -> World:
    wipe(server.state.db.engine)
    TOKEN_CACHE.clear()
    invalidate_caches()
    w = World(server)
    for name, (role, tenant, token) in _seed(server.state).items():
        w.people[name] = Person(name, role, tenant, token, w.client(token))
    return w
