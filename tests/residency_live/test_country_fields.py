"""Every country a dataset names is an ISO 3166 alpha-2 code, and its jurisdiction is one
the residency rules know (or a site's country): anything else is refused with a
machine-readable code and the field, as for a tenant's country, and nothing is written
(no dataset, no audit record, no version bump)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.conftest import As, World
from masnaa.cli.main import app

from .conftest import register

BASE = {"name": "voices", "home_site": "ma-1", "data_class": "personal"}
CONSENT = {"country": "MA", "condition": "express_consent", "kind": "consent"}

REFUSED_REGISTRATIONS = [
    # (what the body adds, code, field)
    ({"jurisdiction": "1!"}, "invalid-country", "jurisdiction"),
    ({"jurisdiction": "#$"}, "invalid-country", "jurisdiction"),
    ({"jurisdiction": "XX"}, "unknown-country", "jurisdiction"),  # well-formed, no rules
    ({"serving_copy_countries": ["KE", "??"]}, "invalid-country",
     "serving_copy_countries[1]"),
    ({"grounds": [{**CONSENT, "country": "m!"}]}, "invalid-country", "grounds[0].country"),
    ({"grounds": [{**CONSENT, "destinations": ["NG", "!!"]}]}, "invalid-country",
     "grounds[0].destinations[1]"),
]


def _audit_lines(ops: As) -> int:
    r = ops.get("/api/v1/audit/export")
    assert r.status_code == 200, r.text
    return len(r.text.splitlines())


def _refused(r: Any, code: str, field: str) -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == (code, field), err


@pytest.mark.parametrize(("extra", "code", "field"), REFUSED_REGISTRATIONS)
def test_a_registration_naming_no_country_is_refused_and_writes_nothing(
    world: World, extra: dict[str, Any], code: str, field: str,
) -> None:
    alice, ops = world["um6p-alice"].client, world["ops"].client
    before = _audit_lines(ops)
    _refused(alice.post("/api/v1/datasets", json={**BASE, **extra}), code, field)
    assert alice.get("/api/v1/datasets").json() == []
    assert _audit_lines(ops) == before


def test_the_unknown_country_names_the_ones_that_would_do(world: World) -> None:
    alice = world["um6p-alice"].client
    r = alice.post("/api/v1/datasets", json={**BASE, "jurisdiction": "XX"})
    message = r.json()["error"]["message"]
    assert "'XX'" in message and "MA" in message and "KE" in message
    # Lower case is read as the code it spells, as before.
    assert register(alice, **BASE, jurisdiction="ke")["jurisdictions"] == ["KE"]


def test_grounds_and_serving_copies_naming_no_country_change_nothing(world: World) -> None:
    alice, ops = world["um6p-alice"].client, world["ops"].client
    data = register(alice, **BASE)
    before = _audit_lines(ops)
    path = f"/api/v1/datasets/{data['id']}"
    _refused(alice.post(f"{path}/grounds", json={**CONSENT, "destinations": ["!!"]}),
             "invalid-country", "destinations[0]")
    _refused(alice.post(f"{path}/grounds", json={**CONSENT, "country": "1!"}),
             "invalid-country", "country")
    _refused(alice.post(f"{path}/serving-copies", json={"country": "??"}),
             "invalid-country", "country")
    after = alice.get(path).json()
    assert (after["version"], after["grounds"], after["serving_copy_countries"]) == (1, [], [])
    assert _audit_lines(ops) == before
    # A download to no country is refused before it is judged, so nothing is audited.
    _refused(alice.get(f"/api/v1/artifacts/{data['id']}/download",
                       params={"destination": "1!"}), "invalid-country", "destination")
    assert _audit_lines(ops) == before


def test_the_command_line_refuses_a_jurisdiction_that_is_no_country(
    world: World, tmp_path: Path,
) -> None:
    ops = {"MASNAA_HOME": str(tmp_path), "MASNAA_URL": world.server.url,
           "MASNAA_TOKEN": world["ops"].token}
    run = CliRunner().invoke
    done = run(app, ["data", "register", "bad2", "--site", "ma-1", "--class", "health",
                     "--tenant", "um6p", "--jurisdiction", "#$"], env=ops)
    assert done.exit_code == 1 and "invalid-country" in done.output, done.output
    assert world["ops"].client.get("/api/v1/datasets").json() == []
