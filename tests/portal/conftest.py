"""A real factory for the portal's tests: the API app with the portal, under a real
uvicorn on loopback, over a SQLite file, with a real control loop running jobs
as local processes — and Debian's chromium driven by Playwright.

The world is built once per session (the control loop keeps its own view of
the store, so it is not wiped between tests): two sites, three nodes, two
tenants with a member each, and an operator. Tests create their own jobs and
find them by id, so they do not depend on each other's rows.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from masnaa.api import Settings, create_app
from masnaa.api.deps import AppState
from masnaa.portal import mount_portal
from masnaa.service import tenancy
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.tenancy import Caller
from masnaa.service.tokens import issue_token
from masnaa.store import models as m
from masnaa.store.db import make_engine, upgrade

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "portal"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Factory:
    url: str
    state: AppState
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, who: str | None = None) -> httpx.Client:
        """An API client as ``who`` (an httpx client; the portal is HTML)."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def submit(self, who: str, **spec: object) -> str:
        with self.client(who) as c:
            r = c.post("/api/v1/jobs", json={"command": ["true"], **spec})
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

    def job(self, job_id: str) -> m.Job:
        with self.state.db.read() as s:
            job = s.get(m.Job, job_id)
            assert job is not None
            return job

    def wait_state(self, job_id: str, states: set[str], timeout: float = 20.0) -> m.Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {job.state}, not in {states}")
            time.sleep(0.05)


def _seed(state: AppState) -> dict[str, str]:
    now = time.time()
    tokens: dict[str, str] = {}
    with state.db.write() as s:
        boot = tenancy.bootstrap(s, now=now, operator="ops")
        assert boot.token is not None
        tokens["ops"] = boot.token.secret
        ma = m.Site(name="ma-1", country="MA", currency="MAD")
        ke = m.Site(name="ke-1", country="KE", currency="KES")
        h100 = m.GpuType(name="h100-sxm-80gb")
        a100 = m.GpuType(name="a100-80gb")
        s.add_all([ma, ke, h100, a100])
        s.flush()
        s.add_all([
            m.Node(site_id=ma.id, name="ma-n0", gpu_count=8, gpu_type_id=h100.id,
                   domains=["nvl0", "leaf0", "ma-1"], virtual=True),
            m.Node(site_id=ma.id, name="ma-n1", gpu_count=8, gpu_type_id=h100.id,
                   domains=["nvl1", "leaf0", "ma-1"], virtual=True),
            m.Node(site_id=ke.id, name="ke-n0", gpu_count=4, gpu_type_id=a100.id,
                   domains=["nvl0", "leaf0", "ke-1"], virtual=True),
        ])
        op = Caller(user_id=0, user="ops", role=m.Role.OPERATOR, tenant_id=None, tenant=None,
                    token_id=0)
        for tenant, country, user in (("um6p", "MA", "amina"), ("uon", "KE", "wanjiru")):
            tenancy.create_tenant(s, op, name=tenant, kind="university", country=country, now=now)
            tenancy.create_project(s, op, name="llm", tenant=tenant, now=now)
            tenancy.create_user(s, op, name=user, role="member", tenant=tenant, now=now)
            tokens[user] = issue_token(s, op, user, now=now).secret
        tenancy.set_quota(s, op, tenant="um6p", site="ma-1", gpu_type="h100-sxm-80gb",
                          nominal=16, borrowing_limit=None, lending_limit=None)
        tenancy.set_quota(s, op, tenant="uon", site="ke-1", gpu_type="a100-80gb",
                          nominal=4, borrowing_limit=None, lending_limit=None)
    return tokens


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Factory]:
    home = tmp_path_factory.mktemp("portal-home")
    url = f"sqlite:///{home / 'masnaa.sqlite'}"
    upgrade(url)
    engine = make_engine(url, pool_size=10)
    settings = Settings(db_url=url, home=home, log_dir=home / "logs", migrate=False)
    app = mount_portal(create_app(settings, engine=engine))
    state: AppState = app.state.masnaa
    tokens = _seed(state)
    loop = ControlLoop(LoopConfig(db_url=url, home=home, tick=0.2, kill_grace=2, cancel_grace=2))
    stop = threading.Event()
    loop_thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    loop_thread.start()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Factory(f"http://127.0.0.1:{port}", state, tokens)
    finally:
        server.should_exit = True
        stop.set()
        thread.join(timeout=10)
        loop_thread.join(timeout=10)
        loop.release_lease()
        loop.close()
        engine.dispose()


# --- the browser ------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not at /usr/bin/chromium: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
