"""Isolation matrix: every endpoint × role × another tenant's object → not found, no leak.

The callers are um6p's member and tenant admin; the objects belong to uon.
Each refusal must be indistinguishable from asking for an object that never
existed (same status, same code, same message with the name swapped).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from masnaa.store import models as m

if TYPE_CHECKING:
    from tests.api.conftest import World

ROLES = ["um6p-alice", "um6p-admin"]
GHOST = "ghost"  # stands for a name that never existed

# (method, path template, body template); {job}, {tenant}, {user}, {token}, {project}
# are filled with uon's objects, or with ghosts for the comparison.
BY_NAME: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/jobs/{job}", None),
    ("GET", "/api/v1/jobs/{job}/explain", None),
    ("GET", "/api/v1/jobs/{job}/logs", None),
    ("GET", "/api/v1/jobs/{job}/logs?stream=stderr", None),
    ("POST", "/api/v1/jobs/{job}/cancel", None),
    ("GET", "/api/v1/tenants/{tenant}", None),
    ("GET", "/api/v1/projects?tenant={tenant}", None),
    ("GET", "/api/v1/users?tenant={tenant}", None),
    ("GET", "/api/v1/quotas?tenant={tenant}", None),
    ("POST", "/api/v1/projects", {"name": "stolen", "tenant": "{tenant}"}),
    ("POST", "/api/v1/users", {"name": "mole", "tenant": "{tenant}"}),
    ("GET", "/api/v1/tokens?user={user}", None),
    ("POST", "/api/v1/tokens", {"user": "{user}"}),
    ("POST", "/api/v1/tokens/{token}/revoke", None),
    ("POST", "/api/v1/jobs", {"command": ["x"], "project": "{project}"}),
    ("POST", "/api/v1/jobs/batch", {"jobs": [{"command": ["x"], "project": "{project}"}]}),
]

LISTS = [
    "/api/v1/jobs",
    "/api/v1/jobs?tenant=uon",
    "/api/v1/jobs?project=uon/llm",
    "/api/v1/jobs?user=uon-alice",
    "/api/v1/queue",
    "/api/v1/usage",
    "/api/v1/tenants",
    "/api/v1/projects",
    "/api/v1/users",
    "/api/v1/tokens",
    "/api/v1/quotas",
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


def _uon_objects(world: World, tmp_path: Path) -> dict[str, str]:
    job = world.submit("uon-alice", project="llm", env={"SECRET": "uon-only"})
    log = tmp_path / "uon.log"
    log.write_text("uon private output\n")
    world.set_job(job["id"], state="running", attempt=1, started_at=time.time(),
                  stdout_path=str(log), stderr_path=str(log), site="ke-1", gpu_type="a100-80gb")
    with world.server.state.db.read() as s:
        token_id = s.scalars(
            select(m.ApiToken.id).join(m.User, m.ApiToken.user_id == m.User.id)
            .where(m.User.name == "uon-alice")
        ).first()
    return {"job": job["id"], "tenant": "uon", "user": "uon-alice", "token": str(token_id),
            "project": "uon/llm"}


GHOSTS = {"job": "j-0000000000", "tenant": GHOST, "user": GHOST, "token": "999999",
          "project": f"{GHOST}/llm"}


@pytest.mark.parametrize("who", ROLES)
def test_another_tenants_objects_are_not_found(world: World, who: str, tmp_path: Path) -> None:
    real = _uon_objects(world, tmp_path)
    client = world[who].client
    for method, path, body in BY_NAME:
        r = client.request(method, _fill(path, real), json=_fill(body, real))
        g = client.request(method, _fill(path, GHOSTS), json=_fill(body, GHOSTS))
        where = f"{who} {method} {path}"
        assert r.status_code in (400, 404), (where, r.status_code, r.text)
        assert (r.status_code, r.json()["error"]["code"]) == (
            g.status_code, g.json()["error"]["code"]
        ), where
        swapped = r.json()["error"]["message"]
        for key, value in sorted(real.items(), key=lambda kv: -len(kv[1])):
            swapped = swapped.replace(value, GHOSTS[key])
        assert swapped == g.json()["error"]["message"], where
    # Nothing was changed by those attempts.
    shown = world["uon-alice"].client.get(f"/api/v1/jobs/{real['job']}").json()
    assert shown["cancel_requested"] is False
    assert world["uon-alice"].client.get("/api/v1/whoami").status_code == 200


@pytest.mark.parametrize("who", ROLES)
def test_lists_never_mention_another_tenant(world: World, who: str, tmp_path: Path) -> None:
    _uon_objects(world, tmp_path)
    world.submit("um6p-alice", project="llm")
    client = world[who].client
    for path in LISTS:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "uon" not in r.text, (who, path, r.text[:300])
        assert "ke-1" not in r.text or path == "/api/v1/sites", (who, path)


def test_operators_see_every_tenant(world: World, tmp_path: Path) -> None:
    real = _uon_objects(world, tmp_path)
    ops = world["ops"].client
    assert ops.get(f"/api/v1/jobs/{real['job']}").json()["env"] == {"SECRET": "uon-only"}
    assert {t["name"] for t in ops.get("/api/v1/tenants").json()} == {"local", "um6p", "uon"}
    assert ops.get(f"/api/v1/jobs/{real['job']}/logs").json()["data"] == "uon private output\n"
    tenants = {t["tenant"] for t in ops.get("/api/v1/queue").json()["tenants"]}
    assert tenants == {"local", "um6p", "uon"}


def test_members_read_but_do_not_manage_their_tenant(world: World) -> None:
    alice = world["um6p-alice"].client
    assert {u["name"] for u in alice.get("/api/v1/users").json()} == {
        "um6p-admin", "um6p-alice", "um6p-bob"
    }
    tokens = alice.get("/api/v1/tokens").json()
    assert {t["user"] for t in tokens} == {"um6p-alice"}
    admin_tokens = world["um6p-admin"].client.get("/api/v1/tokens").json()
    assert {t["user"] for t in admin_tokens} == {"um6p-admin", "um6p-alice", "um6p-bob"}
    assert all("token" not in t for t in admin_tokens)  # secrets are never shown again
