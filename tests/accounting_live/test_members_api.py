"""Members through the real API: the PI keeps the role, members are users of the
allocation's tenant (another tenant's user answers 404 exactly as a missing one), and a
refusal writes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .test_api_flows import ask, error

if TYPE_CHECKING:
    from tests.api.conftest import World


def add(world: World, who: str, alloc: str, user: str, role: str) -> Any:
    return world[who].client.post(
        f"/api/v1/allocations/{alloc}/members", json={"user": user, "role": role}
    )


@pytest.mark.parametrize(
    ("who", "user", "role", "status", "code"),
    [
        ("um6p-bob", "um6p-alice", "member", 409, "pi-role"),  # the manager demotes the PI
        ("um6p-alice", "um6p-alice", "member", 409, "pi-role"),  # the PI demotes himself
        ("um6p-alice", "um6p-admin", "pi", 422, "one-pi"),
        ("um6p-bob", "ghost", "member", 404, "user-not-found"),
        ("um6p-bob", "uon-alice", "member", 404, "user-not-found"),  # another tenant's
        ("um6p-bob", "ops", "member", 404, "user-not-found"),  # an operator has no tenant
        ("um6p-admin", "um6p-admin", "member", 403, "not-allowed"),  # not a member of it
    ],
)
def test_member_changes_that_are_refused(
    world: World, who: str, user: str, role: str, status: int, code: str
) -> None:
    a = ask(world)
    assert add(world, "um6p-alice", a["id"], "um6p-bob", "allocation-manager").status_code == 200
    before = world["um6p-alice"].client.get(f"/api/v1/allocations/{a['id']}").json()
    r = add(world, who, a["id"], user, role)
    assert error(r) == (status, code), r.text
    assert r.json()["error"]["message"]
    after = world["um6p-alice"].client.get(f"/api/v1/allocations/{a['id']}").json()
    assert after == before
    assert after["members"] == {"um6p-alice": "pi", "um6p-bob": "allocation-manager"}


def test_a_manager_adds_a_member_of_the_tenant(world: World) -> None:
    a = ask(world)
    assert add(world, "um6p-alice", a["id"], "um6p-bob", "allocation-manager").status_code == 200
    r = add(world, "um6p-bob", a["id"], "um6p-admin", "member")
    assert r.status_code == 200, r.text
    assert r.json()["members"] == {
        "um6p-alice": "pi", "um6p-bob": "allocation-manager", "um6p-admin": "member"
    }
    # Re-adding the PI as co-PI to "fix" the roles is refused too.
    assert error(add(world, "um6p-bob", a["id"], "um6p-alice", "co-pi")) == (409, "pi-role")
