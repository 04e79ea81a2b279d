"""Supplement requests and rejection reasons through the real API (SQLite, and PostgreSQL
when MASNAA_TEST_POSTGRES_URL is set): a member asks, reviewers decide, an operator grants
onto the same allocation; the applicant reads why a request was rejected, but not the
approvals' notes; another tenant gets 404 for all of it; the CLI verb."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .test_api_flows import ask, error, hours, make_reviewer, review
from .test_cli import run

if TYPE_CHECKING:
    from tests.api.conftest import World


def awarded(world: World, h: int = 100) -> dict[str, Any]:
    """An innovator grant of ``h`` GPU-hours to um6p/llm, with um6p-bob as a member."""
    make_reviewer(world)
    a = ask(world, **hours(h))
    for step in ("admin-check", "technical"):
        assert review(world, a["id"], step).status_code == 200
    r = world["ops"].client.post(f"/api/v1/allocations/{a['id']}/award", json=hours(h))
    assert r.status_code == 200, r.text
    r = world["um6p-alice"].client.post(
        f"/api/v1/allocations/{a['id']}/members", json={"user": "um6p-bob", "role": "member"}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def ask_more(world: World, base: str, who: str = "um6p-bob", h: float = 30,
             why: str = "a second training run") -> Any:  # fmt: skip
    return world[who].client.post(
        f"/api/v1/allocations/{base}/supplement-requests",
        json={**hours(h), "justification": why},
    )


def test_a_member_asks_reviewers_approve_and_the_grant_adds_to_the_same_allocation(
    world: World,
) -> None:
    base = awarded(world)
    r = ask_more(world, base["id"])
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["id"] != base["id"] and req["supplement_of"] == base["id"]
    assert (req["state"], req["project"], req["tier"]) == ("requested", "um6p/llm", "innovator")
    assert req["balance_gpu_seconds"] == 0 and req["history"][0]["by"] == "um6p-bob"
    # Listed with the tenant's allocations, and for reviewers like any request.
    listed = world["um6p-alice"].client.get("/api/v1/allocations").json()
    assert {a["id"]: a["supplement_of"] for a in listed}[req["id"]] == base["id"]
    # An award before the reviews is refused; so is one by a non-operator.
    ops = world["ops"].client
    assert error(ops.post(f"/api/v1/allocations/{req['id']}/award", json=hours(30))) == (
        409, "bad-state")
    for step in ("admin-check", "technical"):
        assert review(world, req["id"], step).json()["state"] in ("in-review", "approved")
    r = world["uon-bob"].client.post(f"/api/v1/allocations/{req['id']}/award", json=hours(30))
    assert error(r) == (403, "not-an-operator")
    # The operator grants 20 of the 30 GPU-hours asked: they land on the base.
    r = ops.post(f"/api/v1/allocations/{req['id']}/award", json=hours(20))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "granted" and r.json()["balance_gpu_seconds"] == 0
    after = world["um6p-alice"].client.get(f"/api/v1/allocations/{base['id']}").json()
    assert after["supplements"] == 1
    assert after["balance_gpu_seconds"] == 120 * 3600
    assert {"by": "ops", "what": f"supplement ({req['id']})"} in [
        {k: e[k] for k in ("by", "what")} for e in after["history"]]
    # The tier allows one supplement: the next ask is refused at once.
    assert error(ask_more(world, base["id"], h=1)) == (409, "too-many-supplements")
    # The operator's direct grant is still there (and counts against the same rule).
    r = ops.post(f"/api/v1/allocations/{base['id']}/supplements", json=hours(1))
    assert error(r) == (409, "too-many-supplements")


def test_who_may_ask_and_what_is_refused(world: World) -> None:
    base = awarded(world)
    # Same tenant, not a member of the allocation.
    assert error(ask_more(world, base["id"], who="um6p-admin")) == (403, "not-allowed")
    # Another tenant: the allocation does not exist for them.
    assert error(ask_more(world, base["id"], who="uon-alice")) == (404, "allocation-not-found")
    assert error(ask_more(world, base["id"], h=51)) == (422, "supplement-too-large")
    assert error(ask_more(world, base["id"], why=" ")) == (422, "no-justification")
    assert error(ask_more(world, base["id"], h=-1)) == (422, "negative-hours")
    r = world["um6p-bob"].client.post(
        f"/api/v1/allocations/{base['id']}/supplement-requests", json=hours(5)
    )
    assert r.status_code == 422  # the justification is required
    # A request that is not live cannot be supplemented.
    pending = ask(world)
    assert error(ask_more(world, pending["id"], who="um6p-alice")) == (409, "bad-state")


def test_the_applicant_reads_the_reason_of_a_rejection_and_no_other_tenant_does(
    world: World,
) -> None:
    base = awarded(world)
    req = ask_more(world, base["id"]).json()
    bob = world["uon-bob"].client  # the reviewer
    r = bob.post(f"/api/v1/allocations/{req['id']}/reviews",
                 json={"step": "admin-check", "approve": True, "comment": "internal-note-42"})
    assert r.status_code == 200, r.text
    r = bob.post(f"/api/v1/allocations/{req['id']}/reviews",
                 json={"step": "technical", "approve": False,
                       "comment": "Use the first award before asking for more."})
    assert r.json()["state"] == "rejected"
    for who in ("um6p-bob", "um6p-alice"):
        r = world[who].client.get(f"/api/v1/allocations/{req['id']}")
        got = r.json()
        assert got["state"] == "rejected"
        assert got["rejection"]["step"] == "technical"
        assert got["rejection"]["reason"] == "Use the first award before asking for more."
        assert got["reviews"] is None
        assert "internal-note-42" not in r.text and "reviewer" not in got["rejection"]
    # Reviewers and operators see every review, with names and notes.
    seen = world["ops"].client.get(f"/api/v1/allocations/{req['id']}").json()
    assert [x["reviewer"] for x in seen["reviews"]] == ["uon-bob", "uon-bob"]
    assert seen["rejection"]["reason"].startswith("Use the first award")
    # Another tenant: 404, and the reason is nowhere in what they can list.
    other = world["uon-alice"].client
    assert error(other.get(f"/api/v1/allocations/{req['id']}")) == (404, "allocation-not-found")
    assert "first award" not in other.get("/api/v1/allocations").text
    assert "first award" not in other.get("/api/v1/accounting/usage").text
    # A rejected request is never granted.
    r = world["ops"].client.post(f"/api/v1/allocations/{req['id']}/award", json=hours(5))
    assert error(r) == (409, "bad-state")
    base_after = world["um6p-alice"].client.get(f"/api/v1/allocations/{base['id']}").json()
    assert base_after["supplements"] == 0 and base_after["rejection"] is None


def test_the_cli_asks_for_a_supplement_and_shows_a_rejection(world: World) -> None:
    base = awarded(world)
    code, text, err = run(world, "um6p-bob", "alloc", "request-supplement", base["id"],
                          "-g", "ma-1:h100-sxm-80gb=10", "--justification", "ablation runs")
    assert code == 0, err
    assert f"supplement request for {base['id']}" in text and "requested" in text
    req = next(a for a in world["um6p-bob"].client.get("/api/v1/allocations").json()
               if a["supplement_of"] == base["id"])  # fmt: skip
    bob = world["uon-bob"].client
    bob.post(f"/api/v1/allocations/{req['id']}/reviews",
             json={"step": "admin-check", "approve": False, "comment": "no budget left"})
    code, text, _ = run(world, "um6p-bob", "alloc", "show", req["id"])
    assert code == 0 and "rejected at step admin-check: no budget left" in text
    code, _, err = run(world, "uon-alice", "alloc", "request-supplement", base["id"],
                       "-g", "ma-1:h100-sxm-80gb=1", "--justification", "x")
    assert code == 1 and "allocation-not-found" in err
