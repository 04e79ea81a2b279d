"""Fixtures for the ``masnaa`` command against the real API: the world of ``tests/api``
(a real uvicorn on loopback over SQLite, and PostgreSQL when MASNAA_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

from api.conftest import server, world  # noqa: F401  (fixtures)
