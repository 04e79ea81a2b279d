"""Residency on the live service: the API fixtures of ``tests/api`` (a real uvicorn on
loopback, SQLite and PostgreSQL, a two-site world: ma-1 in Morocco, ke-1 in Kenya) plus
a real control loop on the same database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api.conftest import As, Server, World, server, world  # noqa: F401  (fixtures reused)
from live_loop import drive, loop_on  # noqa: F401  (drive: for the tests here)
from masnaa.service.loop import ControlLoop


@pytest.fixture
def loop(world: World) -> Iterator[ControlLoop]:  # noqa: F811
    with loop_on(world.server) as running:
        yield running


def job(client: As, job_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def register(client: As, **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())
