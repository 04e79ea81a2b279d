"""Every refused request: exact status, stable code, a sentence, and nothing written."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from masnaa.service.tokens import hash_token
from masnaa.store import models as m

if TYPE_CHECKING:
    from tests.api.conftest import World

OK: dict[str, Any] = {"command": ["python", "train.py"], "project": "llm"}

# (case, body, status, code, field)
SUBMISSIONS: list[tuple[str, Any, int, str, str | None]] = [
    ("unknown GPU type", {**OK, "gpu_types": ["tpu-v5"]}, 400, "unknown-gpu-type", "gpu_types"),
    ("more GPUs per task than any node", {**OK, "gpus_per_task": 9}, 400, "too-many-gpus",
     "gpus_per_task"),
    ("more tasks than the site holds", {**OK, "tasks": 3, "gpus_per_task": 8}, 400,
     "too-many-gpus", "gpus_per_task"),
    ("gang split across sites", {**OK, "tasks": 5, "gpus_per_task": 4}, 400, "too-many-gpus",
     "gpus_per_task"),
    ("type not at the allowed site", {**OK, "gpu_types": ["a100-80gb"], "sites": ["ma-1"]}, 400,
     "too-many-gpus", "gpus_per_task"),
    ("negative time limit", {**OK, "time_limit": -5}, 400, "invalid-time-limit", "time_limit"),
    ("zero time limit", {**OK, "time_limit": 0}, 400, "invalid-time-limit", "time_limit"),
    ("missing project (tenant has two)", {"command": ["x"]}, 400, "project-required", "project"),
    ("unknown project", {**OK, "project": "nope"}, 400, "unknown-project", "project"),
    ("another tenant's project", {**OK, "project": "uon/llm"}, 400, "unknown-project", "project"),
    ("unknown priority class", {**OK, "priority_class": "urgent"}, 400,
     "unknown-priority-class", "priority_class"),
    ("unknown site", {**OK, "sites": ["eg-9"]}, 400, "unknown-site", "sites"),
    ("neither command nor script", {"project": "llm"}, 400, "command-or-script", "command"),
    ("both command and script", {**OK, "script": "echo hi"}, 400, "command-or-script", "command"),
    ("zero tasks", {**OK, "tasks": 0}, 422, "invalid-request", "tasks"),
    ("zero GPUs", {**OK, "gpus_per_task": 0}, 422, "invalid-request", "gpus_per_task"),
    ("misspelt field", {**OK, "gpu_type": "h100-sxm-80gb"}, 422, "invalid-request", "gpu_type"),
    ("wrong type", {**OK, "tasks": "many"}, 422, "invalid-request", "tasks"),
    ("not an object", [1, 2], 422, "invalid-request", None),
    ("NUL in a name", {**OK, "name": "a\x00b"}, 422, "invalid-request", "name"),
    ("NUL in an argument", {**OK, "command": ["a\x00"]}, 422, "invalid-request", "command[0]"),
    ("'=' in an environment name", {**OK, "env": {"A=B": "x"}}, 422, "invalid-request",
     "env.A=B"),
    ("empty environment name", {**OK, "env": {"": "x"}}, 422, "invalid-request", "env"),
    ("environment name a shell cannot export", {**OK, "env": {"1BAD": "x"}}, 422,
     "invalid-request", "env.1BAD"),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [pytest.param(b, s, c, f, id=case) for case, b, s, c, f in SUBMISSIONS],
)
def test_bad_submission(world: World, body: Any, status: int, code: str, field: str | None) -> None:
    r = world["um6p-alice"].client.post("/api/v1/jobs", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert len(error["message"]) > 20  # a sentence, not a bare code
    with world.server.state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(m.Job)) == 0


@pytest.mark.parametrize(
    ("shape", "advice"),
    [
        ({"gpus_per_task": 9}, "the largest node allowed has 8 GPUs: ask for at most 8 per task"),
        ({"tasks": 3, "gpus_per_task": 8}, "at most 2 tasks of 8 GPUs fit at one site"),
    ],
)
def test_too_many_gpus_says_what_would_fit(
    world: World, shape: dict[str, int], advice: str
) -> None:
    r = world["um6p-alice"].client.post("/api/v1/jobs", json={**OK, **shape})
    assert r.status_code == 400 and advice in r.json()["error"]["message"], r.text


def test_a_missing_project_is_refused_with_the_projects_one_may_name(world: World) -> None:
    r = world["um6p-alice"].client.post("/api/v1/jobs", json={"command": ["x"]})
    assert r.status_code == 400
    assert r.json()["error"]["message"].endswith("you have several: um6p/llm, um6p/vision")
    # An operator may charge any tenant's project: the first five are named.
    r = world["ops"].client.post("/api/v1/jobs", json={"command": ["x"]})
    assert r.status_code == 400
    assert "um6p/llm, um6p/vision, uon/llm, uon/vision" in r.json()["error"]["message"]


def test_invalid_json_is_invalid_request(world: World) -> None:
    r = world["um6p-alice"].client.post(
        "/api/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid-request"
    assert "JSON" in r.json()["error"]["message"]
    # Nesting deeper than the parser follows is the same error, not a bare 400.
    deep = b'{"command": ["true"], "name": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = world["um6p-alice"].client.post(
        "/api/v1/jobs", content=deep, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid-request", r.text
    assert "JSON" in r.json()["error"]["message"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversize_body_is_413(world: World, chunked: bool) -> None:
    body = b'{"command": ["' + b"x" * (1100 * 1024) + b'"], "project": "llm"}'
    client = world["um6p-alice"].client
    if chunked:
        r = client.post("/api/v1/jobs", content=iter([body[:1000], body[1000:]]),
                        headers={"Content-Type": "application/json"})
    else:
        r = client.post("/api/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body-too-large"


def _token_row(world: World, **values: Any) -> str:
    secret = "msn_" + "t" * 43 + str(time.monotonic_ns())
    with world.server.state.db.write() as s:
        user = s.scalars(select(m.User).where(m.User.name == "um6p-alice")).one()
        s.add(m.ApiToken(user_id=user.id, token_hash=hash_token(secret), prefix=secret[:10],
                         created_at=time.time(), **values))
    return secret


@pytest.mark.parametrize(
    ("case", "header", "message"),
    [
        ("no header", None, "no API token"),
        ("not bearer", "Basic dXNlcjpwYXNz", "no API token"),
        ("unknown token", "Bearer msn_nope", "not known"),
        ("expired", "expired", "expired"),
        ("revoked", "revoked", "revoked"),
    ],
)
def test_bad_token_is_401(world: World, case: str, header: str | None, message: str) -> None:
    if header == "expired":
        header = "Bearer " + _token_row(world, expires_at=time.time() - 1)
    elif header == "revoked":
        header = "Bearer " + _token_row(world, revoked_at=time.time() - 1)
    client = world.client(None)
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/api/v1/jobs"), ("POST", "/api/v1/jobs")):
        r = client.request(method, path, headers=headers, json=OK)
        assert r.status_code == 401, (case, r.text)
        assert r.json()["error"]["code"] == "invalid-token"
        assert message in r.json()["error"]["message"]
        assert r.headers["www-authenticate"] == "Bearer"


def test_revoking_a_token_takes_effect_at_once(world: World) -> None:
    alice = world["um6p-alice"].client
    issued = alice.post("/api/v1/tokens", json={"label": "laptop"}).json()
    laptop = world.client(issued["token"])
    assert laptop.get("/api/v1/whoami").json()["user"] == "um6p-alice"
    assert alice.post(f"/api/v1/tokens/{issued['id']}/revoke").status_code == 200
    r = laptop.get("/api/v1/whoami")
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_unknown_route_and_method(world: World) -> None:
    c = world["ops"].client
    r = c.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not-found"
    r = c.delete("/api/v1/jobs")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method-not-allowed"
    # Both methods of /jobs, named in the header and in the sentence.
    assert r.headers["allow"] == "GET, POST"
    assert r.json()["error"]["message"] == "DELETE is not allowed here: use GET or POST"
    r = c.get("/api/v1/jobs/j-1/cancel")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    # /jobs/batch is its own path, not a job called "batch".
    r = c.delete("/api/v1/jobs/batch")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("who", "path", "body", "status", "code"),
    [
        ("um6p-alice", "/api/v1/tenants", {"name": "x"}, 403, "forbidden"),
        ("ops", "/api/v1/tenants", {"name": "Bad Name"}, 400, "invalid-name"),
        ("ops", "/api/v1/tenants", {"name": "um6p"}, 409, "tenant-exists"),
        ("ops", "/api/v1/tenants", {"name": "x", "country": "Morocco"}, 422, "invalid-request"),
        ("ops", "/api/v1/tenants", {"name": "x", "country": "ma"}, 400, "invalid-country"),
        ("ops", "/api/v1/tenants", {"name": "x", "kind": "club"}, 400, "invalid-tenant-kind"),
        ("ops", "/api/v1/tenants", {"name": "x", "share": -1}, 400, "invalid-share"),
        # Two such weights would sum to infinity and zero every tenant's fraction.
        ("ops", "/api/v1/tenants", {"name": "x", "share": 1e308}, 400, "invalid-share"),
        ("ops", "/api/v1/projects", {"name": "p"}, 400, "tenant-required"),
        ("um6p-alice", "/api/v1/projects", {"name": "p"}, 403, "forbidden"),
        ("um6p-admin", "/api/v1/projects", {"name": "llm"}, 409, "project-exists"),
        ("um6p-admin", "/api/v1/users", {"name": "root", "role": "operator"}, 403, "forbidden"),
        ("um6p-admin", "/api/v1/users", {"name": "eve", "role": "god"}, 400, "invalid-role"),
        ("um6p-admin", "/api/v1/users", {"name": "eve", "tenant": "uon"}, 404,
         "tenant-not-found"),
        ("um6p-alice", "/api/v1/tokens", {"user": "um6p-bob"}, 403, "forbidden"),
        ("um6p-alice", "/api/v1/tokens", {"ttl_seconds": -1}, 400, "invalid-ttl"),
        ("um6p-alice", "/api/v1/nodes/ma-n0/drain", {}, 403, "forbidden"),
        ("ops", "/api/v1/nodes/nope/drain", {}, 404, "node-not-found"),
        ("ops", "/api/v1/nodes/nope/undrain", {}, 404, "node-not-found"),
        ("ops", "/api/v1/nodes/ma-n0/drain", {"evacuate": "maybe"}, 422, "invalid-request"),
        ("ops", "/api/v1/nodes/ma-n0/drain", {"evacuat": False}, 422, "invalid-request"),
        ("ops", "/api/v1/nodes/ma-n0/undrain", {"evacuate": False}, 422, "invalid-request"),
        ("ops", "/api/v1/sites/ma-1/state", {"state": "up", "evacuate": False}, 422,
         "evacuate-not-applicable"),
        ("ops", "/api/v1/sites/nope/state", {"state": "drained"}, 404, "site-not-found"),
    ],
)
def test_refused_admin_requests(
    world: World, who: str, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    r = world[who].client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
