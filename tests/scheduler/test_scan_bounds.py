"""Where a pass stops scanning, and what it may skip: never a job that could start.

The pass stops early or skips sub-queues only when no remaining job can start;
these tests pin the cases where it must *not* (a short job deep in the queue
still backfills onto reserved nodes) and the reasons it gives when it does.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masnaa.scheduler import PendingQueue, WaitCode

from .builders import Scene, job, mixed_types, on, started

LONG = 10_000.0


def reserved_scene() -> Scene:
    """Two nodes. n0000 is full until t=1000; n0001 has 4 GPUs busy until t=100.

    The head (8 GPUs) reserves n0001 at t=100, so its 4 free GPUs are usable
    only by a job that ends by then.
    """
    s = Scene(nodes=2)
    s.running(job("r0").gpus(8).tenant("x"), "n0000", end=1000)
    s.running(job("r1").gpus(4).tenant("x"), on("n0001", 0, 1, 2, 3), end=100)
    s.pending(job("head").gpus(8).tenant("a").limit(LONG).submitted(1))
    return s


def test_no_short_job_stops_the_scan_with_the_reservation_as_reason() -> None:
    s = reserved_scene()
    s.pending(*(job(f"l{i}").gpus(1).tenant("b").limit(LONG).submitted(2 + i) for i in range(20)))
    d = s.decide("fifo-backfill", now=10)
    assert started(d) == []
    assert d.reservations[0].job_id == "head"
    # Every job behind the head waits for the same reason, looked at or not.
    for i in range(20):
        w = d.wait_for(f"l{i}")
        assert w.code is WaitCode.BACKFILL_WOULD_DELAY, (i, w)
    assert "head" in d.default_wait.message


def test_a_short_job_deep_in_another_sub_queue_still_backfills() -> None:
    s = reserved_scene()
    # Many long jobs of several tenants first, then one short job of yet another tenant.
    for i in range(60):
        s.pending(job(f"l{i}").gpus(1).tenant(f"t{i % 5}").limit(LONG).submitted(2 + i))
    s.pending(job("short").gpus(2).tenant("late").limit(50).submitted(100))
    d = s.decide("fifo-backfill", now=10)
    assert started(d) == ["short"]
    assert d.starts[0].backfilled
    assert all(sl.node == "n0001" for sl in d.starts[0].placement.slices)
    # The long jobs' sub-queues were skipped, not tried one by one.
    assert d.default_wait.code is WaitCode.BACKFILL_WOULD_DELAY
    assert len(d.waiting) < 60


def test_the_smallest_task_left_is_the_one_not_yet_started() -> None:
    # Two free GPUs; once the only 1-GPU job starts, one is left, and the 2-GPU jobs
    # behind cannot use it: the scan stops there, saying so.
    s = Scene(nodes=2)
    s.running(job("r0").gpus(6).tenant("x"), on("n0000", 0, 1, 2, 3, 4, 5), end=1000)
    s.running(job("r1").gpus(8).tenant("x"), "n0001", end=100)
    s.pending(job("one").gpus(1).tenant("b").limit(LONG).submitted(2))
    s.pending(*(job(f"two{i}").gpus(4).tenant("c").limit(LONG).submitted(3 + i) for i in range(5)))
    d = s.decide("fifo-backfill", now=10)
    assert started(d) == ["one"]
    assert d.default_wait.code is WaitCode.NO_CAPACITY
    assert "no free GPUs can hold a task" in d.default_wait.message


def test_a_task_exactly_the_size_of_the_room_outside_the_reservation_still_starts() -> None:
    # The head reserves n0001; n0000 keeps 2 free GPUs outside it. The 4-GPU job is
    # blocked, and the 2-GPU job (too long to end before the reservation) fits the
    # room outside exactly: the scan must not stop before it.
    s = Scene(nodes=2)
    s.running(job("r0").gpus(6).tenant("x"), on("n0000", 0, 1, 2, 3, 4, 5), end=1000)
    s.running(job("r1").gpus(8).tenant("x"), "n0001", end=100)
    s.pending(job("head").gpus(8).tenant("a").limit(LONG).submitted(1))
    s.pending(job("four").gpus(4).tenant("b").limit(LONG).submitted(2))
    s.pending(job("two").gpus(2).tenant("c").limit(LONG).submitted(3))
    d = s.decide("fifo-backfill", now=10)
    assert d.reservations[0].nodes == ("n0001",)
    assert started(d) == ["two"]
    assert {sl.node for sl in d.starts[0].placement.slices} == {"n0000"}


def test_a_known_misfit_keeps_the_quota_reason_for_a_tenant_over_quota() -> None:
    # b's 8-GPU job fails to fit (capacity); a's job of the same shape is over a's quota:
    # a must still be told "quota", not "no capacity".
    s = Scene(nodes=2).quota("a", 4, borrowing_limit=0).quota("b", 16)
    s.running(job("r").gpus(4).tenant("b"), on("n0000", 0, 1, 2, 3), end=100)
    s.running(job("r2").gpus(4).tenant("b"), on("n0001", 0, 1, 2, 3), end=100)
    s.pending(job("b8").gpus(8).tenant("b").submitted(1))
    s.pending(job("a8").gpus(8).tenant("a").submitted(2))
    d = s.decide("masnaa", now=10)
    assert started(d) == []
    assert d.wait_for("a8").code is WaitCode.QUOTA


# ------------------------------------------------- the queue's time-limit index
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30), st.integers(1, 50)), max_size=120))
def test_time_limit_minimums_match_a_brute_force(ops: list[tuple[bool, int, int]]) -> None:
    q = PendingQueue()
    live: dict[str, tuple[str, float]] = {}
    rng = random.Random(len(ops))
    n = 0
    for add, who, limit in ops:
        if add or not live:
            n += 1
            j = job(f"j{n}").tenant(f"t{who % 3}").limit(float(limit)).submitted(float(n)).build()
            q.add(j, attained_service=float(rng.choice([0, 5_000, 50_000])))
            live[j.id] = (j.tenant, j.time_limit)
        else:
            victim = sorted(live)[who % len(live)]
            q.remove(victim)
            del live[victim]
        expect = min((lim for _, lim in live.values()), default=None)
        assert q.min_time_limit() == expect
        for key, keys in q.sub_queues().items():
            ids = [q.entry_at(sk).job.id for sk in keys]
            assert q.queue_min_time_limit(key) == min(live[i][1] for i in ids)


def test_a_backlog_of_one_gpu_type_does_not_hide_jobs_for_another() -> None:
    # Every H100 is busy and 600 H100 jobs wait (beyond backfill_depth); an L40S job
    # submitted last must still start on the idle L40S node.
    s = Scene(cluster=mixed_types(1, 1))
    s.running(job("r").gpus(8).tenant("x"), "h0000", start=1900, end=5000)  # too new to preempt
    s.pending(*(job(f"h{i}").gpus(1).tenant(f"t{i % 3}").submitted(i) for i in range(600)))
    s.pending(job("l").gpus(2).types("l40s").tenant("t0").submitted(1000))
    for policy in ("fifo-backfill", "masnaa", "las"):
        d = s.decide(policy, now=2000, backfill_depth=500)
        assert started(d) == ["l"], policy
        assert d.wait_for("h599").code is WaitCode.NO_CAPACITY, policy


def test_a_backlog_the_policy_cannot_preempt_for_is_passed_over() -> None:
    # One tenant, no quota to reclaim and no lower class: its H100 backlog may preempt
    # nobody, though the running job is old enough to be a candidate in principle.
    s = Scene(cluster=mixed_types(1, 1))
    s.running(job("r").gpus(8).tenant("t"), "h0000", start=0, end=50_000)
    s.pending(*(job(f"h{i}").gpus(1).tenant("t").submitted(i) for i in range(600)))
    s.pending(job("l").gpus(2).types("l40s").tenant("t").submitted(1000))
    d = s.decide("masnaa", now=20_000, backfill_depth=500)
    assert started(d) == ["l"]
    assert d.preemptions == []


def test_a_backlog_of_gangs_too_big_for_the_free_gpus_is_passed_over_by_shape() -> None:
    # The head reserves n0001; n0000 has 3 GPUs free. 600 8-GPU jobs (past
    # backfill_depth) cannot fit anywhere now; a 2-GPU job behind them still starts.
    s = Scene(nodes=2)
    s.running(job("r0").gpus(5).tenant("x"), on("n0000", 0, 1, 2, 3, 4), end=1000)
    s.running(job("r1").gpus(8).tenant("x"), "n0001", end=100)
    s.pending(job("head").gpus(8).tenant("a").limit(LONG).submitted(1))
    s.pending(*(job(f"b{i}").gpus(8).tenant(f"t{i % 4}").limit(LONG).submitted(2 + i)
                for i in range(600)))
    s.pending(job("small").gpus(2).tenant("late").limit(LONG).submitted(1000))
    d = s.decide("fifo-backfill", now=10, backfill_depth=500)
    assert started(d) == ["small"]
    assert all(sl.node == "n0000" for sl in d.starts[0].placement.slices)
    # Each tenant's 8-GPU sub-queue was passed over whole, not job by job.
    assert d.default_wait.code is WaitCode.NO_CAPACITY
    assert "did not fit" in d.default_wait.message
    assert len(d.waiting) < 50
    assert d.wait_for("b599").code is WaitCode.NO_CAPACITY


def test_a_job_ending_exactly_when_the_reservation_starts_still_backfills() -> None:
    # 10 + 6.767 == 16.767, but 16.767 - 10 < 6.767 in floating point: the skip must
    # ask the very question ``exclusion`` asks, or the two part at the boundary.
    s = Scene(nodes=2)
    s.running(job("r0").gpus(8).tenant("x"), "n0000", end=1000)
    s.running(job("r1").gpus(4).tenant("x"), on("n0001", 0, 1, 2, 3), end=16.767)
    s.pending(job("head").gpus(8).tenant("a").limit(LONG).submitted(1))
    for i in range(20):
        s.pending(job(f"l{i}").gpus(1).tenant(f"t{i % 5}").limit(LONG).submitted(2 + i))
    s.pending(job("edge").gpus(2).tenant("late").limit(6.767).submitted(30))
    d = s.decide("fifo-backfill", now=10)
    assert d.reservations[0].start_time == 16.767
    assert started(d) == ["edge"]


def test_a_failed_reclaim_off_the_reserved_node_leaves_a_job_ending_at_its_start() -> None:
    # a (no quota) reserves n0001, where c's borrowed jobs end at t=1500. b's 4-GPU
    # job must keep off n0001 and its reclaim fails; b's 8-GPU job ends exactly at
    # 1500, so it may use n0001: that search was never made, and the job must be
    # looked at, not passed over with its class's failure.
    s = Scene(nodes=2).quota("a", 0).quota("b", 8).quota("c", 0).quota("x", 8)
    s.running(job("x0").gpus(8).tenant("x"), "n0000", end=50_000)
    for g in range(8):
        s.running(job(f"c{g}").gpus(1).tenant("c"), on("n0001", g), end=1_500)
    s.pending(job("head").gpus(8).tenant("a").limit(LONG).submitted(1))
    s.pending(job("b-long").gpus(4).tenant("b").limit(LONG).submitted(2))
    s.pending(job("b-edge").gpus(8).tenant("b").limit(500).submitted(3))
    d = s.decide("masnaa", now=1_000, reclaim_after=0.0, estimate_depth=0)
    assert d.reservations[0].job_id == "head"
    assert d.reservations[0].start_time == 1_500
    assert d.wait_for("b-long").code is WaitCode.NO_CAPACITY
    assert {p.beneficiary for p in d.preemptions} == {"b-edge"}
    assert len(d.preemptions) == 8


@pytest.mark.parametrize("in_grace", [False, True])
def test_a_backlog_whose_reclaim_already_failed_is_passed_over(in_grace: bool) -> None:
    # b may reclaim c's borrowed GPUs, but stopping them frees no whole node for its
    # 8-GPU jobs: the first two searches fail (without, then with the reservation),
    # and the rest of b's 600 jobs (past backfill_depth) share their preemption
    # class. A short job of another tenant behind them still starts. In grace: a job
    # of x (within its quota) is being preempted, and b may not claim its GPU.
    s = Scene(nodes=3).quota("b", 8).quota("c", 0).quota("x", 24).quota("d", 2)
    for n in (0, 1):
        node = f"n000{n}"
        s.running(job(f"x{n}").gpus(7).tenant("x"), on(node, *range(1, 8)), end=50_000)
        s.running(job(f"c{n}").gpus(1).tenant("c"), on(node, 0), start=5, end=50_000)
    s.running(job("x2").gpus(6).tenant("x"), on("n0002", *range(6)), end=5_000)
    if in_grace:
        s.running(job("xg").gpus(1).tenant("x"), on("n0002", 6), end=50_000)
        s.state.mark_preempting("xg", 1_100)
    s.pending(*(job(f"b{i}").gpus(8).tenant("b").limit(10 * LONG).submitted(1 + i)
                for i in range(600)))
    s.pending(job("late").gpus(1).tenant("d").limit(500).submitted(700))
    d = s.decide("masnaa", now=1_000, backfill_depth=500, reclaim_after=0.0)
    assert started(d) == ["late"]
    assert d.preemptions == []
    assert d.reservations[0].job_id == "b0"
    # Every b job still gets a reason, the skipped ones the shape's misfit.
    assert d.wait_for("b599").code is WaitCode.NO_CAPACITY


def test_a_sub_queue_whose_head_may_claim_is_not_passed_over() -> None:
    # No attempt is left for new victims, and no GPU is free. c's 4-GPU job is in
    # grace; b may claim its GPUs (c borrows), but they make room for a 4-GPU task
    # only: b's 8-GPU jobs fail to claim, and its 4-GPU job behind them claims.
    s = Scene(nodes=2).quota("b", 8).quota("c", 0).quota("x", 12)
    s.running(job("x0").gpus(8).tenant("x"), "n0000", end=50_000)
    s.running(job("x1").gpus(4).tenant("x"), on("n0001", 4, 5, 6, 7), end=50_000)
    s.running(job("cg").gpus(4).tenant("c"), on("n0001", 0, 1, 2, 3), end=50_000)
    s.state.mark_preempting("cg", 1_100)
    s.pending(*(job(f"b{i}").gpus(8).tenant("b").limit(LONG).submitted(1 + i)
                for i in range(40)))
    s.pending(job("small").gpus(4).tenant("b").limit(LONG).submitted(100))
    d = s.decide("masnaa", now=1_000, preemption_attempts_per_pass=0, reclaim_after=0.0)
    assert d.wait_for("small").code is WaitCode.WAITING_FOR_PREEMPTION
    assert d.wait_for("b0").code is not WaitCode.WAITING_FOR_PREEMPTION
