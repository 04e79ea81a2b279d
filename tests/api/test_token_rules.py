"""Limits on issuing and listing tokens: a tenant admin issues tokens for plain members
only (not for another tenant admin, nor for a reviewer), a token never issues one that
outlives it, and a member asking for a peer's tokens hears "forbidden", not "not found"."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.api.conftest import As, World


def issue(client: As, **body: object) -> tuple[int, dict[str, object]]:
    r = client.post("/api/v1/tokens", json=body)
    return r.status_code, dict(r.json())


def test_a_tenant_admin_issues_tokens_for_plain_members(world: World) -> None:
    status, body = issue(world["um6p-admin"].client, user="um6p-alice", label="for alice")
    assert status == 201 and body["user"] == "um6p-alice"


def test_a_tenant_admin_may_not_become_another_admin(world: World) -> None:
    r = world["ops"].client.post(
        "/api/v1/users", json={"name": "um6p-admin2", "role": "tenant-admin", "tenant": "um6p"}
    )
    assert r.status_code == 201, r.text
    status, body = issue(world["um6p-admin"].client, user="um6p-admin2")
    assert status == 403
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "token-needs-operator"
    assert "'um6p-admin2' is a tenant admin too" in str(error["message"])
    # A new admin has no token to issue their own with: an operator issues the first.
    assert "let them issue their own" not in str(error["message"])
    assert "an operator issues theirs (their first one too)" in str(error["message"])
    assert issue(world["ops"].client, user="um6p-admin2")[0] == 201


def test_a_tenant_admin_may_not_become_a_reviewer(world: World) -> None:
    r = world["ops"].client.put("/api/v1/reviewers/um6p-bob", json={"steps": ["technical"]})
    assert r.status_code == 200, r.text
    status, body = issue(world["um6p-admin"].client, user="um6p-bob")
    assert status == 403
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "token-needs-operator"
    assert "reviewer" in str(error["message"])
    # The reviewer issues their own, and an operator may issue one for them.
    assert issue(world["um6p-bob"].client)[0] == 201
    assert issue(world["ops"].client, user="um6p-bob")[0] == 201


@pytest.mark.parametrize("child_ttl", [None, 3600.0, 61.0])
def test_a_token_never_issues_one_that_outlives_it(world: World, child_ttl: float | None) -> None:
    status, short = issue(world["um6p-alice"].client, ttl_seconds=60)
    assert status == 201
    child = world.client(str(short["token"]))
    status, body = issue(child, ttl_seconds=child_ttl)
    assert status == 422, body
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "token-outlives-parent"
    assert error["field"] == "ttl_seconds"
    assert "give ttl_seconds of at most" in str(error["message"])


def test_a_token_issues_one_that_ends_no_later(world: World) -> None:
    status, short = issue(world["um6p-alice"].client, ttl_seconds=60)
    assert status == 201
    status, body = issue(world.client(str(short["token"])), ttl_seconds=30)
    assert status == 201
    assert float(str(body["expires_at"])) <= float(str(short["expires_at"]))
    # A token without expiry is not limited.
    status, forever = issue(world["um6p-alice"].client)
    assert status == 201 and forever["expires_at"] is None


def test_a_members_peers_tokens_are_forbidden_and_another_tenants_not_found(
    world: World,
) -> None:
    alice = world["um6p-alice"].client
    r = alice.get("/api/v1/tokens", params={"user": "um6p-bob"})
    assert r.status_code == 403
    assert r.json()["error"] == {"code": "forbidden", "message": "you may list only your own "
                                 "tokens", "field": None}
    r = alice.get("/api/v1/tokens", params={"user": "uon-bob"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "user-not-found"
    assert alice.get("/api/v1/tokens", params={"user": "um6p-alice"}).status_code == 200
