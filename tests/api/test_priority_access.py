"""Who may use a priority class: a class may name the tenants whose jobs may use it
(``priority_classes.tenants``); a job of any other tenant asking for it is refused with
403 ``priority-class-not-allowed``, in a single submission, a batch and the portal's form."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from masnaa.service.jobs import invalidate_caches
from masnaa.store import models as m

if TYPE_CHECKING:
    from tests.api.conftest import World


def restrict(world: World, name: str, tenants: list[str]) -> None:
    """What applying a factory file with ``tenants = [...]`` writes."""
    with world.server.state.db.write() as s:
        row = s.scalars(select(m.PriorityClass).where(m.PriorityClass.name == name)).one()
        row.tenants = tenants
    invalidate_caches()


def test_a_class_open_to_every_tenant_stays_open(world: World) -> None:
    job = world.submit("uon-alice", project="llm", priority_class="high")
    assert job["priority_class"] == "high"


def test_a_class_kept_for_one_tenant_is_refused_to_the_others(world: World) -> None:
    restrict(world, "high", ["um6p"])
    r = world["uon-alice"].client.post(
        "/api/v1/jobs", json={"command": ["true"], "project": "llm", "priority_class": "high"}
    )
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "priority-class-not-allowed"
    assert error["field"] == "priority_class"
    assert error["message"] == (
        "priority class 'high' is not open to tenant 'uon': its jobs may use low, normal"
    )
    assert world.submit("um6p-alice", project="llm", priority_class="high")["state"] == "pending"
    # An operator submitting into uon's project is held to uon's classes too.
    r = world["ops"].client.post(
        "/api/v1/jobs", json={"command": ["true"], "project": "uon/llm", "priority_class": "high"}
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "priority-class-not-allowed"


def test_a_batch_with_one_refused_class_writes_nothing(world: World) -> None:
    restrict(world, "high", ["um6p"])
    jobs = [{"command": ["true"], "project": "llm"},
            {"command": ["true"], "project": "llm", "priority_class": "high"}]
    r = world["uon-alice"].client.post("/api/v1/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["field"] == "jobs[1].priority_class"
    assert world["uon-alice"].client.get("/api/v1/jobs").json()["jobs"] == []


def test_a_queued_job_keeps_its_class_when_the_class_is_narrowed(world: World) -> None:
    queued = world.submit("uon-alice", project="llm", priority_class="high")["id"]
    restrict(world, "high", ["um6p"])
    shown = world["uon-alice"].client.get(f"/api/v1/jobs/{queued}").json()
    assert (shown["state"], shown["priority_class"]) == ("pending", "high")


def test_priority_classes_say_who_may_use_them_without_naming_other_tenants(
    world: World,
) -> None:
    restrict(world, "high", ["um6p", "local"])

    def seen(who: str) -> dict[str, tuple[bool, list[str]]]:
        rows = world[who].client.get("/api/v1/priority-classes").json()
        return {p["name"]: (p["open_to_all"], p["tenants"]) for p in rows}

    assert seen("ops")["high"] == (False, ["local", "um6p"])
    assert seen("um6p-alice")["high"] == (False, ["um6p"])
    assert seen("uon-alice")["high"] == (False, [])
    assert seen("uon-alice")["normal"] == (True, [])


def test_an_unknown_class_names_only_the_classes_open_to_the_tenant(world: World) -> None:
    restrict(world, "high", ["um6p"])
    r = world["uon-alice"].client.post(
        "/api/v1/jobs", json={"command": ["true"], "project": "llm", "priority_class": "urgent"}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("unknown-priority-class", "priority_class")
    assert error["message"] == "priority class 'urgent' is not declared: use one of low, normal"
    r = world["um6p-alice"].client.post(
        "/api/v1/jobs", json={"command": ["true"], "project": "llm", "priority_class": "urgent"}
    )
    assert r.json()["error"]["message"].endswith("use one of low, normal, high")
