"""Allocations through the real API: request → review → award → active, auto-approval,
tranches after a progress report, supplements, lapse at expiry, the bad-input table, and
isolation (another tenant's allocation, usage and statement are 404; reviews are hidden
from members)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.api.conftest import World

TODAY = date.today()
POOL = {"site": "ma-1", "gpu_type": "h100-sxm-80gb"}


def hours(h: float | str) -> dict[str, Any]:
    return {"gpu_hours": [{**POOL, "hours": str(h)}]}


def ask(world: World, who: str = "um6p-alice", **over: Any) -> dict[str, Any]:
    body = {
        "project": "llm",
        "tier": "innovator",
        **hours(100),
        "start": TODAY.isoformat(),
        "duration_days": 90,
        "justification": "pre-train a Darija model",
        **over,
    }
    r = world[who].client.post("/api/v1/allocations", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def make_reviewer(world: World, user: str = "uon-bob") -> None:
    r = world["ops"].client.put(
        f"/api/v1/reviewers/{user}", json={"steps": ["admin-check", "technical", "merit"]}
    )
    assert r.status_code == 200, r.text


def review(world: World, alloc: str, step: str, who: str = "uon-bob", ok: bool = True) -> Any:
    return world[who].client.post(
        f"/api/v1/allocations/{alloc}/reviews",
        json={"step": step, "approve": ok, "comment": "fine"},
    )


def error(r: Any) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_request_review_award_active_with_reviews_hidden_from_members(world: World) -> None:
    make_reviewer(world)
    a = ask(world)
    assert a["state"] == "requested" and a["members"] == {"um6p-alice": "pi"}
    assert error(review(world, a["id"], "admin-check", who="um6p-bob")) == (403, "not-a-reviewer")
    assert error(review(world, a["id"], "technical")) == (409, "wrong-review-step")
    assert review(world, a["id"], "admin-check").json()["state"] == "in-review"
    assert review(world, a["id"], "technical").json()["state"] == "approved"
    mine = world["um6p-alice"].client.get(f"/api/v1/allocations/{a['id']}").json()
    assert mine["reviews"] is None  # applicants see the state only
    seen = world["uon-bob"].client.get(f"/api/v1/allocations/{a['id']}").json()
    assert [r["step"] for r in seen["reviews"]] == ["admin-check", "technical"]
    r = world["um6p-alice"].client.post(f"/api/v1/allocations/{a['id']}/award", json=hours(80))
    assert error(r) == (403, "not-an-operator")
    r = world["ops"].client.post(f"/api/v1/allocations/{a['id']}/award", json=hours(80))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["state"] == "active"  # starts today
    assert got["balance_gpu_seconds"] == 80 * 3600 and got["balance_gpu_hours"] == "80.0000"
    assert got["projected_exhaustion"] is None  # no burn yet


def test_small_tier_is_auto_approved(world: World) -> None:
    a = ask(world, tier="gateway", **hours(10))
    assert a["state"] == "active" and a["balance_gpu_seconds"] == 36_000


def test_second_tranche_needs_a_progress_report(world: World) -> None:
    make_reviewer(world)
    a = ask(world, tier="open-call", **hours(1000))
    for step in ("admin-check", "technical", "merit"):
        assert review(world, a["id"], step).status_code == 200
    ops = world["ops"].client
    got = ops.post(f"/api/v1/allocations/{a['id']}/award", json=hours(1000)).json()
    assert got["balance_gpu_seconds"] == 500 * 3600 and got["tranches"]["released"] == 1
    assert error(ops.post(f"/api/v1/allocations/{a['id']}/tranches")) == (422, "report-required")
    r = world["um6p-alice"].client.post(
        f"/api/v1/allocations/{a['id']}/reports",
        json={"text": "first checkpoint trained", "products": ["10.5281/zenodo.1234567"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["reports"][0]["products"] == ["10.5281/zenodo.1234567"]
    got = ops.post(f"/api/v1/allocations/{a['id']}/tranches").json()
    assert got["balance_gpu_seconds"] == 1000 * 3600 and got["tranches"]["released"] == 2


def test_supplement_then_a_second_one_is_refused(world: World) -> None:
    a = ask(world, tier="gateway", **hours(100))
    ops = world["ops"].client
    got = ops.post(f"/api/v1/allocations/{a['id']}/supplements", json=hours(50)).json()
    assert got["balance_gpu_seconds"] == 150 * 3600 and got["supplements"] == 1
    r = ops.post(f"/api/v1/allocations/{a['id']}/supplements", json=hours(1))
    assert error(r) == (409, "too-many-supplements")


def test_unused_hours_lapse_at_expiry(world: World) -> None:
    # The earliest start a request may have is yesterday: one day long, it expired at
    # today's midnight, before it could be used.
    start = TODAY - timedelta(days=1)
    a = ask(world, tier="gateway", **hours(10), start=start.isoformat(), duration_days=1)
    assert a["state"] == "expired"
    assert a["lapsed_gpu_seconds"] == 36_000 and a["balance_gpu_seconds"] == 0


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("negative-award", 422, "negative-hours"),
        ("negative-request", 422, "negative-hours"),
        ("review-by-non-reviewer", 403, "not-a-reviewer"),
        ("currency-mismatch", 422, "currency-mismatch"),
        ("overlapping-price", 409, "overlapping-price"),
        ("bad-period", 422, "bad-period"),
        ("unknown-tier", 422, "unknown-tier"),
    ],
)
def test_bad_input_is_refused_with_a_code(world: World, case: str, status: int, code: str) -> None:
    ops = world["ops"].client
    alice = world["um6p-alice"].client
    price = {**POOL, "amount": "30.00", "currency": "MAD", "valid_from": "2026-01-01"}
    if case == "negative-award":
        make_reviewer(world)
        a = ask(world)
        review(world, a["id"], "admin-check")
        review(world, a["id"], "technical")
        r = ops.post(f"/api/v1/allocations/{a['id']}/award", json=hours(-5))
    elif case == "negative-request":
        r = alice.post(
            "/api/v1/allocations",
            json={
                "project": "llm",
                "tier": "gateway",
                **hours(-1),
                "start": TODAY.isoformat(),
                "duration_days": 30,
                "justification": "x",
            },
        )
    elif case == "review-by-non-reviewer":
        a = ask(world)
        r = review(world, a["id"], "admin-check", who="um6p-bob")
    elif case == "currency-mismatch":
        r = ops.post("/api/v1/prices", json={"prices": [{**price, "site": "ke-1"}]})
    elif case == "overlapping-price":
        assert ops.post("/api/v1/prices", json={"prices": [price]}).status_code == 201
        r = ops.post("/api/v1/prices", json={"prices": [{**price, "valid_from": "2026-06-01"}]})
    elif case == "bad-period":
        r = alice.get("/api/v1/statements/um6p", params={"period": "November"})
    else:
        r = alice.post(
            "/api/v1/allocations",
            json={
                "project": "llm",
                "tier": "platinum",
                **hours(1),
                "start": TODAY.isoformat(),
                "duration_days": 30,
                "justification": "x",
            },
        )
    assert error(r) == (status, code), r.text
    assert r.json()["error"]["message"]


def test_a_start_more_than_a_day_past_is_refused(world: World) -> None:
    body = {"project": "llm", "tier": "gateway", **hours(10), "duration_days": 30,
            "justification": "x", "start": (TODAY - timedelta(days=2)).isoformat()}
    r = world["um6p-alice"].client.post("/api/v1/allocations", json=body)
    assert error(r) == (422, "start-in-past"), r.text
    assert (TODAY - timedelta(days=1)).isoformat() in r.json()["error"]["message"]
    assert world["um6p-alice"].client.get("/api/v1/allocations").json() == []


def test_another_tenants_allocation_usage_and_statement_are_not_found(world: World) -> None:
    a = ask(world, tier="gateway", **hours(10))
    other = world["uon-alice"].client
    assert error(other.get(f"/api/v1/allocations/{a['id']}")) == (404, "allocation-not-found")
    ghost = other.get("/api/v1/allocations/alloc-ghost")
    assert error(ghost) == (404, "allocation-not-found")
    assert (
        ghost.json()["error"]["message"].replace("alloc-ghost", a["id"])
        == other.get(f"/api/v1/allocations/{a['id']}").json()["error"]["message"]
    )
    r = other.post(f"/api/v1/allocations/{a['id']}/reports", json={"text": "x"})
    assert error(r) == (404, "allocation-not-found")
    assert other.get("/api/v1/allocations").json() == []
    assert other.get("/api/v1/accounting/usage").json()["allocations"] == []
    r = other.get("/api/v1/statements/um6p", params={"period": "2026-11"})
    assert error(r) == (404, "tenant-not-found")
    r = other.post(
        "/api/v1/allocations",
        json={
            "project": "um6p/llm",
            "tier": "gateway",
            **hours(1),
            "start": TODAY.isoformat(),
            "duration_days": 30,
            "justification": "x",
        },
    )
    assert r.status_code == 404
    mine = world["um6p-bob"].client.get("/api/v1/allocations").json()
    assert [x["id"] for x in mine] == [a["id"]]
    assert error(world["um6p-admin"].client.get("/api/v1/reports/funders")) == (403, "forbidden")


def test_a_reviewer_does_not_review_a_request_of_their_own_tenant(world: World) -> None:
    make_reviewer(world, "uon-bob")
    theirs = ask(world, who="uon-alice")
    r = review(world, theirs["id"], "admin-check", who="uon-bob")
    assert error(r) == (403, "conflict-of-interest")
    assert "of tenant 'uon'" in r.json()["error"]["message"]
    shown = world["ops"].client.get(f"/api/v1/allocations/{theirs['id']}").json()
    assert shown["state"] == "requested" and shown["reviews"] == []
    # Another tenant's request is theirs to review.
    ours = ask(world, who="um6p-alice")
    assert review(world, ours["id"], "admin-check", who="uon-bob").json()["state"] == "in-review"


def test_a_renewal_names_a_visible_allocation_of_the_same_project(world: World) -> None:
    base = ask(world, tier="gateway", **hours(10))
    theirs = ask(world, who="uon-alice", tier="gateway", **hours(10))
    for ghost in (theirs["id"], "alloc-ghost"):
        r = world["um6p-bob"].client.post("/api/v1/allocations", json={
            "project": "llm", "tier": "gateway", **hours(10), "start": TODAY.isoformat(),
            "duration_days": 30, "justification": "renew", "renewal_of": ghost,
        })
        assert error(r) == (404, "allocation-not-found"), r.text
        assert r.json()["error"]["message"] == f"no allocation {ghost!r} is visible to you"
        assert r.json()["error"]["field"] == "renewal_of"
    r = world["um6p-bob"].client.post("/api/v1/allocations", json={
        "project": "vision", "tier": "gateway", **hours(10), "start": TODAY.isoformat(),
        "duration_days": 30, "justification": "renew", "renewal_of": base["id"],
    })
    assert error(r) == (422, "renewal-of-another-project")
    assert r.json()["error"]["field"] == "renewal_of"
    renewed = ask(world, who="um6p-bob", tier="gateway", **hours(10), renewal_of=base["id"])
    assert renewed["renewal_of"] == base["id"]


def test_only_an_awarded_allocation_can_be_renewed(world: World) -> None:
    make_reviewer(world)
    pending = ask(world)
    for state in ("requested", "in-review"):
        if state == "in-review":
            assert review(world, pending["id"], "admin-check").json()["state"] == state
        r = world["um6p-alice"].client.post("/api/v1/allocations", json={
            "project": "llm", "tier": "innovator", **hours(10), "start": TODAY.isoformat(),
            "duration_days": 30, "justification": "renew", "renewal_of": pending["id"],
        })
        assert error(r) == (409, "not-renewable"), r.text
        assert r.json()["error"]["field"] == "renewal_of"
        assert r.json()["error"]["message"] == (
            f"allocation {pending['id']!r} is {state}: only an allocation that is active, "
            "awarded, exhausted or expired can be renewed; wait for its award, or leave "
            "renewal_of out to request a new allocation"
        )
