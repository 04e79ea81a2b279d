"""Periods at the ends of the calendar, through the real API: every endpoint that takes a
month answers 422 ``bad-period`` for one it cannot bound (its next month would be past
9999), and an answer for the first and last months it can."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .test_api_flows import error

if TYPE_CHECKING:
    from tests.api.conftest import World

ENDPOINTS = [
    ("um6p-admin", "/api/v1/statements/um6p"),
    ("ops", "/api/v1/reports/operator"),
    ("um6p-alice", "/api/v1/accounting/usage"),
]


@pytest.mark.parametrize(("who", "path"), ENDPOINTS)
@pytest.mark.parametrize("period", ["9999-12", "0000-12", "2026-13", "10000-01", "2026-1"])
def test_a_month_that_cannot_be_bounded_is_a_bad_period(
    world: World, who: str, path: str, period: str
) -> None:
    r = world[who].client.get(path, params={"period": period})
    assert error(r) == (422, "bad-period"), r.text
    body = r.json()["error"]
    assert body["field"] == "period" and "9999-11" in body["message"]


@pytest.mark.parametrize(("who", "path"), ENDPOINTS)
@pytest.mark.parametrize("period", ["1970-01", "2037-12", "9999-11", "0001-01"])
def test_the_first_and_last_months_answer(world: World, who: str, path: str, period: str) -> None:
    # Usage instants are 64-bit on every store (migration 0005), so PostgreSQL compares
    # 9999-12-01 and 0001-01-01 as SQLite does.
    r = world[who].client.get(path, params={"period": period})
    assert r.status_code == 200, r.text
