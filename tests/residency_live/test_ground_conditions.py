"""A transfer ground names a condition of the residency rules; one under a name no rule
knows (a typo) is refused with the known names, on registration and on a later grant,
and nothing is written."""

from __future__ import annotations

from api.conftest import World

from .conftest import register

GROUND = {"country": "MA", "condition": "express-consent", "kind": "consent"}


def test_an_unknown_condition_is_refused_with_the_known_names(world: World) -> None:
    alice = world["um6p-alice"].client
    r = alice.post("/api/v1/datasets", json={"name": "voices", "home_site": "ma-1",
                                             "data_class": "personal", "grounds": [GROUND]})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == ("unknown-condition", "grounds[0].condition")
    assert "express_consent" in err["message"] and "cndp_transfer_authorisation" in err["message"]
    assert alice.get("/api/v1/datasets").json() == []

    data = register(alice, name="voices", home_site="ma-1", data_class="personal")
    again = alice.post(f"/api/v1/datasets/{data['id']}/grounds", json=GROUND)
    assert again.status_code == 422 and again.json()["error"]["field"] == "condition"
    assert alice.get(f"/api/v1/datasets/{data['id']}").json()["version"] == 1
    ok = alice.post(f"/api/v1/datasets/{data['id']}/grounds",
                    json={**GROUND, "condition": "express_consent"})
    assert ok.status_code == 200 and ok.json()["version"] == 2
