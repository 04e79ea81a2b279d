"""Fixtures for accounting in the live service: the API world of ``tests/api`` (a real
uvicorn on loopback over SQLite, and PostgreSQL when MASNAA_TEST_POSTGRES_URL is set) and
the control-loop factory of ``tests/service`` (a 1×8 virtual node, real processes)."""

from __future__ import annotations

from api.conftest import server, world  # noqa: F401  (fixtures)
from service.conftest import database, factory  # noqa: F401  (fixtures)
