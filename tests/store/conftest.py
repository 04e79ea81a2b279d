"""Every store test runs on SQLite and, when MASNAA_TEST_POSTGRES_URL is set, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

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


@pytest.fixture(scope="session", params=BACKENDS)
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with scratch_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        yield url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    wipe(engine)
    yield engine
    engine.dispose()
