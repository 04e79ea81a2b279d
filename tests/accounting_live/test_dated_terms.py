"""Dated terms through the real API: a discount, a tier or a tax rate set in December
never changes November's statement; a month that has ended is closed to new terms;
usage across a change is rated part by part."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from masnaa.accounting.instants import at
from masnaa.store import accounting as t

if TYPE_CHECKING:
    from tests.api.conftest import World

HOUR = 3600


def _at(world: World, monkeypatch: pytest.MonkeyPatch, day: date) -> None:
    """Set the server's clock to noon of ``day``."""
    state = world.server.state
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()
    monkeypatch.setattr(state, "settings", dataclasses.replace(state.settings, clock=lambda: noon))


def _usage(world: World, job: str, start: int, hours: int) -> None:
    with world.server.state.db.write() as s:
        s.add(t.UsageRecordRow(job_id=job, attempt=0, start=start, end=start + hours * HOUR,
                               gpus=1, gpu_type="h100-sxm-80gb", site="ma-1", tenant="um6p",
                               project="um6p/llm", allocation_id=None))  # fmt: skip


def _statement(world: World, period: str) -> dict[str, Any]:
    r = world["um6p-admin"].client.get("/api/v1/statements/um6p", params={"period": period})
    assert r.status_code == 200, r.text
    (mad,) = r.json()
    return dict(mad)


def _ok(r: Any, effective: str) -> None:
    assert r.status_code == 200, r.text
    assert r.json()["effective"] == effective


def test_terms_set_later_never_re_rate_a_month(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = world["ops"].client
    price = {"site": "ma-1", "gpu_type": "h100-sxm-80gb", "amount": "30.00", "currency": "MAD",
             "valid_from": "2026-01-01"}  # fmt: skip
    assert ops.post("/api/v1/prices", json={"prices": [price]}).status_code == 201

    _at(world, monkeypatch, date(2026, 11, 10))
    _ok(ops.put("/api/v1/tax-rates", json={"rates": {"MAD": "0.2"}}), "2026-11")
    half = [{"kind": "university", "rate": "0.5"}]
    _ok(ops.put("/api/v1/discounts", json={"discounts": half}), "2026-11")
    _usage(world, "j-nov", at(date(2026, 11, 1)), 10)
    _usage(world, "j-cross", at(date(2026, 12, 1)) - 4 * HOUR, 8)  # 4 h in each month
    _usage(world, "j-dec", at(date(2026, 12, 1)), 10)
    _usage(world, "j-jan", at(date(2027, 1, 1)), 1)
    nov = _statement(world, "2026-11")
    # 14 h × 30 MAD = 420, half off, 20 % tax.
    assert (nov["gross"], nov["discount"], nov["tax_rate"], nov["total"]) == (
        "420.00", "210.00", "0.2", "252.00"
    )

    _at(world, monkeypatch, date(2026, 12, 10))
    quarter = [{"kind": "university", "rate": "0.25"}]
    _ok(ops.put("/api/v1/discounts", json={"discounts": quarter}), "2026-12")
    _ok(ops.put("/api/v1/tax-rates", json={"rates": {"MAD": "0.1"}}), "2026-12")
    assert _statement(world, "2026-11") == nov
    dec = _statement(world, "2026-12")
    # 14 h × 30 = 420, a quarter off = 315, 10 % tax.
    assert (dec["gross"], dec["discount"], dec["tax_rate"], dec["total"]) == (
        "420.00", "105.00", "0.1", "346.50"
    )
    assert sorted(li["job"] for li in dec["lines"]) == ["j-cross", "j-dec"]

    # A tier from January: December keeps the kind's row, January gets the tier's.
    tiers = [*quarter, {"kind": "university", "tier": "partner", "rate": "0.8"}]
    _ok(ops.put("/api/v1/discounts", json={"discounts": tiers, "effective": "2027-01"}), "2027-01")
    r = ops.put("/api/v1/tenant-terms/um6p",
                json={"enforced": False, "tier": "partner", "effective": "2027-01"})  # fmt: skip
    _ok(r, "2027-01")
    assert _statement(world, "2026-12") == dec
    jan = _statement(world, "2027-01")
    assert (jan["gross"], jan["discount"], jan["subtotal"]) == ("30.00", "24.00", "6.00")
    # The first tax rates set apply to every month: January has December's.
    assert jan["tax_rate"] == "0.1"

    listed = ops.get("/api/v1/discounts").json()
    assert [v["effective"] for v in listed["versions"]] == ["2026-11", "2026-12", "2027-01"]
    assert listed["versions"][0]["discounts"] == [
        {"kind": "university", "tier": None, "rate": "0.5"}
    ]
    taxes = world["um6p-alice"].client.get("/api/v1/tax-rates").json()["versions"]
    assert taxes == [{"effective": "2026-11", "rates": {"MAD": "0.2"}},
                     {"effective": "2026-12", "rates": {"MAD": "0.1"}}]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/discounts", {"discounts": [{"kind": "university", "rate": "0.9"}]}),
        ("/api/v1/tax-rates", {"rates": {"MAD": "0.5"}}),
        ("/api/v1/tenant-terms/um6p", {"enforced": True, "tier": "partner"}),
    ],
)
def test_an_ended_month_is_closed_and_a_bad_month_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, path: str, body: dict[str, Any]
) -> None:
    ops = world["ops"].client
    _at(world, monkeypatch, date(2026, 12, 1))
    before = _terms(world)
    r = ops.put(path, json={**body, "effective": "2026-11"})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "closed-month"
    assert "2026-12" in error["message"]
    for bad in ("2026-13", "December", "2026-12-01"):
        r = ops.put(path, json={**body, "effective": bad})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "bad-effective-month"
    assert _terms(world) == before  # nothing half-written
    assert world["um6p-admin"].client.put(path, json=body).status_code == 403


def _terms(world: World) -> tuple[list[tuple[str, date, dict[str, Any]]], list[bool]]:
    """Every dated term's versions, and every tenant's enforcement."""
    with world.server.state.db.read() as s:
        rows = s.scalars(select(t.DatedTermRow).order_by(t.DatedTermRow.term))
        versions = [(r.term, r.valid_from, r.value) for r in rows]
        return versions, list(s.scalars(select(t.TenantTermsRow.enforced)))


def test_terms_without_a_tier_leave_the_tier_and_bad_rows_are_named(world: World) -> None:
    ops = world["ops"].client
    r = ops.put("/api/v1/tenant-terms/um6p", json={"enforced": False, "tier": "partner"})
    assert r.status_code == 200 and r.json()["tier"] == "partner"
    r = ops.put("/api/v1/tenant-terms/um6p", json={"enforced": True})  # enforcement only
    assert r.status_code == 200 and r.json()["tier"] == "partner", r.text
    bad = [{"kind": "university", "rate": "0.5"}, {"kind": "ngo", "rate": "1.5"}]
    r = ops.put("/api/v1/discounts", json={"discounts": bad})
    assert r.status_code == 422 and r.json()["error"]["field"] == "discounts[1].rate", r.text
    r = ops.put("/api/v1/tax-rates", json={"rates": {"MAD": "0.2"}, "effective": "9999-12"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad-effective-month"
