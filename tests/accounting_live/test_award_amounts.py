"""An award or a supplement grant of nothing, through the real API and the CLI: without
an amount it gives what was asked; an explicit zero is refused (422 ``empty-award`` /
``empty-supplement``) and leaves the request as it was, to be awarded properly."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from .test_api_flows import POOL, ask, error, hours, make_reviewer, review
from .test_cli import run
from .test_supplement_api import ask_more, awarded

if TYPE_CHECKING:
    from tests.api.conftest import World

ZERO: list[dict[str, Any]] = [
    {"gpu_hours": []},
    {"gpu_hours": [{**POOL, "hours": "0"}]},
    {"gpu_hours": [], "credits": "0"},
]


def approved(world: World, h: int = 100) -> str:
    make_reviewer(world)
    a = ask(world, **hours(h))
    for step in ("admin-check", "technical"):
        assert review(world, a["id"], step).status_code == 200
    return str(a["id"])


@pytest.mark.parametrize("body", [None, {}, {"credits": None}])
def test_an_award_without_an_amount_gives_what_was_asked(
    world: World, body: dict[str, Any] | None
) -> None:
    aid = approved(world, h=10)
    r = world["ops"].client.post(f"/api/v1/allocations/{aid}/award", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active" and r.json()["balance_gpu_seconds"] == 10 * 3600


@pytest.mark.parametrize("body", ZERO)
def test_an_award_of_zero_is_refused_and_the_request_stays_approved(
    world: World, body: dict[str, Any]
) -> None:
    ops = world["ops"].client
    aid = approved(world, h=10)
    r = ops.post(f"/api/v1/allocations/{aid}/award", json=body)
    assert error(r) == (422, "empty-award"), r.text
    assert ops.get(f"/api/v1/allocations/{aid}").json()["state"] == "approved"
    assert ops.post(f"/api/v1/allocations/{aid}/award", json=hours(8)).status_code == 200


@pytest.mark.parametrize("body", ZERO)
def test_a_supplement_of_zero_leaves_the_tier_s_only_supplement(
    world: World, body: dict[str, Any]
) -> None:
    ops = world["ops"].client
    base = awarded(world)["id"]
    req = ask_more(world, base, h=30).json()["id"]
    for step in ("admin-check", "technical"):
        assert review(world, req, step).status_code == 200
    r = ops.post(f"/api/v1/allocations/{req}/award", json=body)
    assert error(r) == (422, "empty-supplement"), r.text
    assert error(ops.post(f"/api/v1/allocations/{base}/supplements", json=body)) == (
        422, "empty-supplement")
    assert ops.get(f"/api/v1/allocations/{base}").json()["balance_gpu_seconds"] == 100 * 3600
    # Granted with no amount: what was asked, on the base, with its one supplement.
    r = ops.post(f"/api/v1/allocations/{req}/award")
    assert r.status_code == 200, r.text
    assert ops.get(f"/api/v1/allocations/{base}").json()["balance_gpu_seconds"] == 130 * 3600


def test_the_cli_awards_what_was_asked_by_default(world: World) -> None:
    aid = approved(world, h=10)
    code, text, err = run(world, "ops", "alloc", "award", aid)
    assert code == 0, err
    assert "active" in text and "balance 10.0000 GPU-h" in text
    other = approved(world, h=10)
    code, _, err = run(world, "ops", "alloc", "award", other, "--credits", "0")
    assert code == 1 and "empty-award" in err
    assert re.search(r"more than zero", err)
