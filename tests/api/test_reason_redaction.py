"""Reasons that name another tenant's job: the scheduler writes them for the factory as
a whole (a victim's ``preempting`` event names its preemptor; ``wait-held-for`` names the
job GPUs are held for); a caller who cannot see that job reads "a job of another
tenant" instead, in the job, its events, ``explain``, the job list and the queue.
Operators read them as written."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from masnaa.domain.reasons import Phrase
from masnaa.store import models as m
from masnaa.store.events import transition

if TYPE_CHECKING:
    from tests.api.conftest import World


def preempt(world: World, victim: str, by: str) -> None:
    """Write the event the control loop writes when ``by`` preempts ``victim``."""
    with world.server.state.db.write() as s:
        job = s.get(m.Job, victim)
        assert job is not None
        transition(s, job, job.state, at=1.0, code="preempting", reason=(
            Phrase("victim-priority", {"job": by, "class": "high", "victim_class": "normal"}),
            Phrase("grace", {"seconds": 120}),
        ))


def test_a_victim_of_another_tenant_does_not_learn_its_preemptor(world: World) -> None:
    theirs = world.submit("um6p-alice", project="llm", priority_class="high")["id"]
    victim = world.submit("uon-alice", project="llm")["id"]
    world.set_job(victim, state="running")
    preempt(world, victim, theirs)

    shown = world["uon-bob"].client.get(f"/api/v1/jobs/{victim}")
    event = shown.json()["events"][-1]
    assert event["reason"] == "priority: a job of another tenant (high) outranks normal; " \
                              "120 s to checkpoint"
    assert [p["key"] for p in event["phrases"]] == ["victim-priority-hidden", "grace"]
    assert shown.json()["state_reason"] == event["reason"]
    for answer in (shown, world["uon-bob"].client.get("/api/v1/jobs"),
                   world["uon-bob"].client.get(f"/api/v1/jobs/{victim}/explain")):
        assert theirs not in answer.text and "um6p" not in answer.text

    ops = world["ops"].client.get(f"/api/v1/jobs/{victim}").json()
    assert ops["events"][-1]["reason"].startswith(f"priority: {theirs} (high) outranks")


def test_a_preemptor_of_the_same_tenant_is_named(world: World) -> None:
    ours = world.submit("uon-bob", project="llm", priority_class="high")["id"]
    victim = world.submit("uon-alice", project="llm")["id"]
    world.set_job(victim, state="running")
    preempt(world, victim, ours)
    event = world["uon-alice"].client.get(f"/api/v1/jobs/{victim}").json()["events"][-1]
    assert event["reason"].startswith(f"priority: {ours} (high) outranks normal")


def test_gpus_held_for_another_tenants_job_are_said_so(world: World) -> None:
    theirs = world.submit("um6p-alice", project="llm")["id"]
    waiting = world.submit("uon-alice", project="llm")["id"]
    held = (Phrase("wait-held-for", {"job": theirs, "start_at": 1700000000}),)
    world.set_job(waiting, wait_code="backfill-would-delay",
                  wait_message=f"the free GPUs are held for job {theirs}, reserved to start at "
                               "1700000000; only a job that ends before then could use them",
                  wait_phrases=[p.to_json() for p in held])
    said = ("the free GPUs are held for a job of another tenant, reserved to start at "
            "1700000000; only a job that ends before then could use them")
    x = world["uon-alice"].client.get(f"/api/v1/jobs/{waiting}/explain").json()
    assert x["wait_message"] == said and said in x["summary"]
    assert x["wait_phrases"] == [{"key": "wait-held-for-hidden",
                                  "params": {"start_at": 1700000000}}]
    queue = world["uon-alice"].client.get("/api/v1/queue").json()
    assert [j["wait_message"] for j in queue["jobs"]] == [said]
    assert theirs not in json.dumps(queue)
    ops = world["ops"].client.get(f"/api/v1/jobs/{waiting}/explain").json()
    assert theirs in ops["wait_message"]


def test_an_old_reason_without_phrases_has_the_id_replaced(world: World) -> None:
    theirs = world.submit("um6p-alice", project="llm")["id"]
    victim = world.submit("uon-alice", project="llm")["id"]
    world.set_job(victim, state_reason=f"priority: {theirs} (high) outranks normal",
                  state_phrases=[])
    job = world["uon-alice"].client.get(f"/api/v1/jobs/{victim}").json()
    assert job["state_reason"] == "priority: a job of another tenant (high) outranks normal"
