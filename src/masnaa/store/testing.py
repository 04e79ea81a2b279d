"""Scratch databases for tests and benchmarks (SQLite file or PostgreSQL).

``MASNAA_TEST_POSTGRES_URL`` names a PostgreSQL server and a role allowed to
create databases; ``scratch_database`` creates a fresh database on it
(``masnaa_t_<random>``), migrates it to head, and drops it afterwards, so
parallel test sessions never see each other's rows. ``wipe`` deletes every
row (children first) so one migrated database serves many tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from masnaa.store.base import Base
from masnaa.store.db import make_engine, normalise_url, upgrade

POSTGRES_ENV = "MASNAA_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    return normalise_url(url) if url else None


@contextmanager
def scratch_database(backend: str, tmp_dir: Path) -> Iterator[str]:
    """Yield the URL of a fresh, migrated database of ``backend`` (sqlite|postgres)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_dir / 'masnaa-test.sqlite'}"
        upgrade(url)
        yield url
        return
    base = postgres_url()
    if base is None:
        raise RuntimeError(f"set {POSTGRES_ENV} to run PostgreSQL tests")
    name = f"masnaa_t_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wipe(engine: Engine) -> None:
    """Delete every row of every table, children first."""
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def engine_for(url: str) -> Engine:
    return make_engine(url)
