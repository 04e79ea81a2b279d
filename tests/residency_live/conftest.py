"""Residency on the live service: the API fixtures of ``tests/api`` (a real uvicorn on
loopback, SQLite and PostgreSQL, a two-site world: ma-1 in Morocco, ke-1 in Kenya) plus
a real control loop on the same database."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.conftest import As, Server, World, server, world  # noqa: F401  (fixtures reused)
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.metrics import Metrics


@pytest.fixture
def loop(world: World) -> Iterator[ControlLoop]:  # noqa: F811
    srv = world.server
    running = ControlLoop(
        LoopConfig(db_url=srv.state.settings.db_url, home=srv.home, tick=0.05,
                   kill_grace=0.5, cancel_grace=0.5),
        engine=srv.state.db.engine, metrics=Metrics(),
    )
    running.start()
    yield running
    running.release_lease()
    running.close()


def drive(loop: ControlLoop, until: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "condition not reached"
        loop.run_pass()
        time.sleep(0.02)


def job(client: As, job_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def register(client: As, **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())
