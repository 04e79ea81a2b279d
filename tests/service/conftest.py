"""A migrated factory database (SQLite, and PostgreSQL when MASNAA_TEST_POSTGRES_URL is set)
with a virtual 1×8 node, an operator and the default tenant, plus helpers to submit jobs
through the service layer exactly as the API does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from masnaa.discovery import virtual_inventory
from masnaa.factory import apply_factory, from_inventory
from masnaa.service import jobs
from masnaa.service.tenancy import Caller, bootstrap
from masnaa.store import models as m
from masnaa.store.db import make_engine, session_factory
from masnaa.store.testing import postgres_url, scratch_database

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


@dataclass
class Factory:
    url: str
    home: Path
    engine: Engine
    sessions: sessionmaker[Session]
    caller: Caller

    def submit(self, specs: list[dict[str, Any]]) -> list[str]:
        with self.sessions() as s, s.begin():
            done = jobs.submit_batch(
                s,
                self.caller,
                [jobs.JobSpec(project="local/default", **spec) for spec in specs],
                now=time.time(),
            )
            return [r.id for r in done.jobs]

    def jobs(self) -> dict[str, m.Job]:
        with self.sessions() as s:
            return {j.id: j for j in s.scalars(select(m.Job))}

    def events(self) -> list[m.JobEvent]:
        with self.sessions() as s:
            return list(s.scalars(select(m.JobEvent).order_by(m.JobEvent.id)))

    def wait_until(self, ids: list[str], states: set[str], timeout: float) -> dict[str, m.Job]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.jobs()
            if all(rows[i].state in states for i in ids):
                return rows
            if time.monotonic() > deadline:
                left = {i: rows[i].state for i in ids if rows[i].state not in states}
                raise AssertionError(f"{len(left)} jobs not in {states} after {timeout}s: {left}")
            time.sleep(0.05)


@dataclass
class Database:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh migrated database, empty."""
    with scratch_database(request.param, tmp_path) as url:
        engine = make_engine(url)
        yield Database(url, engine, session_factory(engine))
        engine.dispose()


@pytest.fixture
def factory(database: Database, tmp_path: Path) -> Factory:
    """A one-node factory of 8 virtual GPUs with an operator and the default tenant."""
    with database.sessions() as s, s.begin():
        apply_factory(s, from_inventory(virtual_inventory("1x8", host="box")))
        bootstrap(s)
        op = s.scalars(select(m.User).where(m.User.role == m.Role.OPERATOR.value)).one()
        caller = Caller(op.id, op.name, m.Role.OPERATOR, None, None, 0)
    home = tmp_path / "home"
    home.mkdir()
    return Factory(database.url, home, database.engine, database.sessions, caller)
