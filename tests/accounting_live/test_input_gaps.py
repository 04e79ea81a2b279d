"""Operator inputs that used to be taken as given: a tax rate for a code that is no
currency, and a reviewer's steps with one that no tier has (which also dropped the
reviewer's real steps). Each is a 422 with a code and the field, and nothing changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from masnaa.store import accounting as t

from .test_api_flows import error

if TYPE_CHECKING:
    from tests.api.conftest import World


@pytest.mark.parametrize("code", ["XYZ", "mad", "MA", "DIRHAM"])
def test_a_tax_rate_needs_an_iso_4217_currency(world: World, code: str) -> None:
    ops = world["ops"].client
    assert ops.put("/api/v1/tax-rates", json={"rates": {"MAD": "0.2"}}).status_code == 200
    r = ops.put("/api/v1/tax-rates", json={"rates": {"KES": "0.16", code: "0.1"}})
    assert error(r) == (422, "unknown-currency"), r.text
    assert r.json()["error"]["field"] == f"rates.{code}"
    # Any ISO code is taken, a site's or not (EGP has no site here).
    ok = ops.put("/api/v1/tax-rates", json={"rates": {"MAD": "0.2", "EGP": "0.14"}})
    assert ok.status_code == 200 and ok.json()["rates"] == {"MAD": "0.2", "EGP": "0.14"}


def test_an_unknown_review_step_is_refused_and_keeps_the_real_ones(world: World) -> None:
    ops = world["ops"].client
    assert ops.put("/api/v1/reviewers/uon-bob", json={"steps": ["technical"]}).status_code == 200
    r = ops.put("/api/v1/reviewers/uon-bob", json={"steps": ["merit", "bogus-step"]})
    assert error(r) == (422, "unknown-review-step"), r.text
    body = r.json()["error"]
    assert body["field"] == "steps[1]"
    assert "admin-check, merit, technical" in body["message"]
    # Still a reviewer of "technical" only: the refused request changed nothing.
    with world.server.state.db.read() as s:
        rows = s.query(t.ReviewerRow).filter(t.ReviewerRow.user == "uon-bob").all()
        assert [row.step for row in rows] == ["technical"]
