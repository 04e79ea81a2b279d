"""The admit phase: allocation balances, and how a pass passes over spent projects.

A project whose allocation is spent starts nothing for the rest of the pass, so
its sub-queues are passed over whole and its jobs are explained once, by project
(``Decision.spent``), never one by one.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masnaa.domain.job import Job
from masnaa.domain.reasons import Phrase
from masnaa.scheduler import PendingQueue, SchedulerConfig, Wait, WaitCode, core, decide
from masnaa.scheduler.admit import admit
from masnaa.scheduler.context import Pass
from masnaa.scheduler.decision import Decision
from masnaa.scheduler.snapshot import Snapshot

from .builders import Scene, home, job, started
from .test_properties import World, worlds

HOUR = 3600.0


def spent_scene(n: int) -> Scene:
    """Two nodes, all free. Tenant ``a`` has ``n`` jobs of a spent project in several
    shapes; tenant ``b``, funded, submits one job after them all."""
    s = Scene(nodes=2)
    s.balances = {"a-p": home(-5 * HOUR), "b-p": home(100 * HOUR)}
    for i in range(n):
        s.pending(job(f"a{i}").tenant("a").gpus(1 + i % 8).limit(HOUR).submitted(i))
    s.pending(job("b").tenant("b").gpus(4).limit(HOUR).submitted(n))
    return s


def tried_in(s: Scene, policy: str, **knobs: Any) -> tuple[Decision, list[str]]:
    """The decision, and the jobs the pass tried (ran through ``admit``), in order."""
    tried: list[str] = []

    def counting(p: Pass, j: Job) -> bool:
        tried.append(j.id)
        return admit(p, j)

    with mock.patch.object(core, "admit", counting):
        return s.decide(policy, **knobs), tried


@pytest.mark.interpreted_core
def test_jobs_of_a_spent_project_are_passed_over_not_tried() -> None:
    s = spent_scene(2_000)
    d, tried = tried_in(s, "fifo-backfill", backfill_depth=10)
    assert started(d) == ["b"]
    # a's eight sub-queues are passed over at their heads: none of its jobs is tried.
    assert tried == ["b"]
    assert not any(job_id.startswith("a") for job_id in d.waiting)
    w = d.wait_for("a1999", "a-p")
    assert w.code is WaitCode.ALLOCATION_EXHAUSTED
    assert "project a-p has" in w.message and "(-5.0 GPU-hours" in w.message
    assert list(d.spent) == ["a-p"]


@pytest.mark.interpreted_core
def test_a_project_spent_within_the_pass_is_passed_over_from_then_on() -> None:
    # 8 GPU-hours funds two 4-GPU one-hour jobs; the third and later wait for it.
    s = Scene(nodes=4)
    s.balances = {"a-p": home(8 * HOUR)}
    s.pending(*(job(f"a{i}").tenant("a").gpus(4).limit(HOUR).submitted(i) for i in range(50)))
    s.pending(job("b").tenant("b").gpus(8).limit(HOUR).submitted(60))
    d, tried = tried_in(s, "masnaa")
    assert sorted(started(d)) == ["a0", "a1", "b"]
    assert sorted(tried) == ["a0", "a1", "b"]  # a2..a49 are passed over at a2
    assert d.wait_for("a2", "a-p").code is WaitCode.ALLOCATION_EXHAUSTED
    assert "(0.0 GPU-hours after jobs started in this pass)" in d.spent["a-p"].message
    assert d.wait_for("a2").code is d.default_wait.code  # without the project: the default


def test_a_sub_queue_mixing_projects_is_kept_while_one_of_them_is_funded() -> None:
    s = Scene(nodes=1)
    s.balances = {"spent": home(0.0), "funded": home(10 * HOUR)}
    s.pending(job("x").tenant("t").project("spent").gpus(2).submitted(0))
    s.pending(job("y").tenant("t").project("funded").gpus(2).submitted(1))
    d = s.decide("masnaa")
    assert started(d) == ["y"]
    assert d.wait_for("x", "spent").code is WaitCode.ALLOCATION_EXHAUSTED


def test_a_group_of_sub_queues_is_dropped_only_when_all_its_projects_are_spent() -> None:
    # One tenant, two shapes: the older sub-queue's project is spent, the other's not.
    s = Scene(nodes=1)
    s.balances = {"spent": home(0.0), "funded": home(10 * HOUR)}
    s.pending(*(job(f"x{i}").tenant("t").project("spent").gpus(2).submitted(i) for i in range(5)))
    s.pending(job("y").tenant("t").project("funded").gpus(4).submitted(9))
    for policy in ("masnaa", "las", "fifo-backfill"):
        assert started(s.decide(policy)) == ["y"], policy


def test_a_reason_of_its_own_comes_before_the_project_s() -> None:
    own = Wait(WaitCode.WAITING_FOR_PREEMPTION, Phrase("wait-preempting", {"jobs": 1}))
    broke = Wait(WaitCode.ALLOCATION_EXHAUSTED, Phrase("no-allocation", {"project": "p"}))
    d = Decision(waiting={"a": own}, spent={"p": broke})
    assert d.wait_for("a", "p") is own  # its claim spent the project: it still starts
    assert d.wait_for("b", "p") is broke
    assert d.wait_for("b", "q") is d.default_wait
    assert d.wait_for("b") is d.default_wait


def test_the_queue_counts_projects_per_sub_queue() -> None:
    q = PendingQueue()
    a = job("a").tenant("t").project("p1").gpus(2).build()
    b = job("b").tenant("t").project("p2").gpus(2).build()
    c = job("c").tenant("t").project("p1").gpus(2).build()
    for j in (a, b, c):
        q.add(j)
    key = next(iter(q.sub_queues()))
    assert q.queue_projects(key) == {"p1": 2, "p2": 1}
    assert q.projects() == {"p1": 2, "p2": 1}
    q.remove("a")
    q.remove("b")
    assert q.queue_projects(key) == {"p1": 1}
    assert q.projects() == {"p1": 1}
    q.remove("c")
    assert key not in q.sub_queues()
    assert q.projects() == {}


POLICIES = ["fifo", "fifo-backfill", "las", "masnaa", "srtf-oracle"]


def same_either_way(snapshot: Snapshot, queue: PendingQueue, now: float, policy: str) -> None:
    """Trying every job of a spent project one by one decides exactly the same."""
    config = SchedulerConfig(policy=policy)
    fast = decide(snapshot, queue, now, config)
    with mock.patch.object(core, "spent_sub_queue", lambda *args: False):
        slow = decide(snapshot, queue, now, config)
    assert fast.starts == slow.starts
    assert fast.preemptions == slow.preemptions
    assert fast.reservations == slow.reservations
    assert fast.rejected == slow.rejected
    assert fast.spent == slow.spent
    for j in queue:
        if j.id not in fast.waiting and j.id not in fast.rejected and j.project in fast.spent:
            assert fast.wait_for(j.id, j.project).code is WaitCode.ALLOCATION_EXHAUSTED


@pytest.mark.interpreted_core
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.sampled_from(POLICIES))
def test_passing_over_spent_sub_queues_changes_no_decision(world: World, policy: str) -> None:
    snapshot, queue = world.build()
    same_either_way(snapshot, queue, world.now, policy)


@pytest.mark.interpreted_core
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from("ab"), st.sampled_from(["pa", "pb", "pc"]),
            st.sampled_from([1, 2, 4, 8]), st.sampled_from([600.0, HOUR, 4 * HOUR]),
        ),
        min_size=1, max_size=40,
    ),
    st.lists(st.sampled_from([-1.0, HOUR, 8 * HOUR, 40 * HOUR]), min_size=3, max_size=3),
    st.integers(0, 3),
    st.sampled_from(POLICIES),
)
def test_projects_sharing_sub_queues_decide_the_same_either_way(
    jobs: list[tuple[str, str, int, float]], funds: list[float], busy: int, policy: str
) -> None:
    """Few shapes, few tenants, projects across tenants: sub-queues and groups that
    mix spent and funded projects are the rule here, not the exception."""
    s = Scene(nodes=4)
    s.balances = {p: home(f) for p, f in zip(["pa", "pb", "pc"], funds, strict=True)}
    for n in range(busy):
        s.running(job(f"r{n}").tenant("c").gpus(8), f"n{n:04d}", end=HOUR * (n + 1))
    for i, (tenant, project, gpus, limit) in enumerate(jobs):
        s.pending(job(f"j{i}").tenant(tenant).project(project).gpus(gpus).limit(limit).submitted(i))
    s.oracle = {j.id: j.time_limit / (1 + k % 3) for k, j in enumerate(s.queue)}
    s.oracle |= {job_id: HOUR for job_id in s.state.running}
    same_either_way(s.snapshot(), s.queue, 10.0, policy)
