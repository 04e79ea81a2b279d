"""``Decision.review_at``: when a rule that reads the clock next says yes where it said no.

Each case is worked out by hand: the time returned, and that a pass at that time
(with nothing else changed) does what the earlier pass could not, while a pass a
moment before still does not.
"""

from __future__ import annotations

from .builders import Scene, job

HOUR = 3600.0


def _lent() -> Scene:
    # Tenant a borrows b's nominal 8 GPUs; b's job arrived at 20.
    s = Scene(nodes=2).quota("a", 8).quota("b", 8)
    s.running(job("a1").gpus(8).tenant("a"), "n0000", start=0)
    s.running(job("a2").gpus(8).tenant("a"), "n0001", start=10)
    s.pending(job("b1").gpus(8).tenant("b").submitted(20))
    return s


def test_a_lender_is_reviewed_when_its_wait_reaches_reclaim_after() -> None:
    s = _lent()
    d = s.decide("masnaa", now=30, review_times=True)
    assert not d.preemptions
    assert d.review_at == 20 + 2 * HOUR
    assert not s.decide("masnaa", now=d.review_at - 1).preemptions
    assert len(s.decide("masnaa", now=d.review_at).preemptions) == 1


def test_the_next_job_to_reach_reclaim_after_is_found_behind_a_head_that_did() -> None:
    # b1 waited long enough and reclaims now; b2, of the same shape, reaches the limit at
    # 5,000 + 2 h, and by then b may still have room (b1 takes the lent node, a2's).
    s = Scene(nodes=3).quota("a", 8).quota("b", 16)
    s.running(job("a1").gpus(8).tenant("a"), "n0000", start=0)
    s.running(job("a2").gpus(8).tenant("a"), "n0001", start=10)
    s.running(job("a3").gpus(8).tenant("a"), "n0002", start=20)
    s.pending(job("b1").gpus(8).tenant("b").submitted(20),
              job("b2").gpus(8).tenant("b").submitted(5_000))
    d = s.decide("masnaa", now=7_300, review_times=True)
    assert len(d.preemptions) == 1
    assert d.review_at == 5_000 + 2 * HOUR


def test_no_review_unless_the_driver_asks_for_one() -> None:
    assert _lent().decide("masnaa", now=30).review_at is None


def test_no_review_when_nobody_borrows_what_the_waiting_job_could_take_back() -> None:
    # b is over its own nominal: its wait reaching reclaim_after changes nothing, and
    # the month-long starvation limit is the only clock left.
    s = Scene(nodes=2).quota("a", 8).quota("b", 8)
    s.running(job("b0").gpus(8).tenant("b"), "n0000", start=0)
    s.running(job("a1").gpus(8).tenant("a"), "n0001", start=0)
    s.pending(job("b1").gpus(8).tenant("b").submitted(20))
    d = s.decide("masnaa", now=30, review_times=True, tenant_starvation_limit=0.0)
    assert d.review_at is None
    d = s.decide("masnaa", now=30, review_times=True)
    assert d.review_at == 20 + 30 * 86400.0


def test_las_is_reviewed_when_a_running_job_climbs_above_the_waiting_job() -> None:
    # A holds the node from 0 and has 800 GPU·s at 100; B waits at level 0. A reaches
    # the 1 GPU-hour level at 3600 / 8 = 450 s of run.
    s = Scene(nodes=1)
    s.running(job("A").gpus(8), "n0000", start=0, end=1e6)
    s.pending(job("B").gpus(8).submitted(100))
    d = s.decide("las", now=100, review_times=True)
    assert not d.preemptions and d.review_at == 450.0
    assert not s.decide("las", now=449).preemptions
    assert [p.job_id for p in s.decide("las", now=450).preemptions] == ["A"]


def test_las_is_reviewed_when_a_young_job_may_be_stopped() -> None:
    # A already holds 10 GPU-hours but started at 0: it may be stopped from 300 s on.
    s = Scene(nodes=1)
    s.running(job("A").gpus(8), "n0000", start=0, end=1e6, attained=40 * HOUR)
    s.pending(job("B").gpus(8).submitted(10))
    d = s.decide("las", now=10, review_times=True)
    assert not d.preemptions and d.review_at == 300.0
    assert [p.job_id for p in s.decide("las", now=300).preemptions] == ["A"]


def test_las_is_reviewed_when_the_waiting_job_starves() -> None:
    # A is at the top level, as is B (it ran 20 GPU-hours before): no victim until B
    # starves, after six hours of waiting; then it may stop A.
    s = Scene(nodes=1)
    s.running(job("A").gpus(8), "n0000", start=0, end=1e9, attained=40 * HOUR)
    s.pending(job("B").gpus(8).submitted(100), attained=20 * HOUR * 8)
    d = s.decide("las", now=1000, review_times=True)
    assert not d.preemptions and d.review_at == 100 + 6 * HOUR
    assert [p.job_id for p in s.decide("las", now=d.review_at).preemptions] == ["A"]


def test_policies_that_never_preempt_have_nothing_to_review() -> None:
    for policy in ("fifo", "fifo-backfill"):
        assert _lent().decide(policy, now=30, review_times=True).review_at is None
