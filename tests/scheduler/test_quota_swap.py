"""A job its tenant's quota holds back stops the tenant's own jobs of lower classes
(``scheduler.quota_swap``)."""

from __future__ import annotations

from masnaa.scheduler.decision import WaitCode

from .builders import Scene, job, on


def full_tenant(borrowing: int = 0) -> Scene:
    """Tenant a holds its whole ceiling (nominal 8 + ``borrowing``) with 4-GPU jobs of
    class normal; b holds the rest of two 8-GPU nodes, or nothing."""
    s = Scene(nodes=2).quota("a", 8, borrowing_limit=borrowing).quota("b", 8)
    s.running(job("a1").gpus(4).tenant("a"), on("n0000", 0, 1, 2, 3), start=0)
    s.running(job("a2").gpus(4).tenant("a"), on("n0000", 4, 5, 6, 7), start=10)
    if borrowing:
        s.running(job("a3").gpus(4).tenant("a"), on("n0001", 0, 1, 2, 3), start=20)
        s.running(job("b1").gpus(4).tenant("b"), on("n0001", 4, 5, 6, 7), start=30)
    else:
        s.running(job("b1").gpus(8).tenant("b"), "n0001", start=30)
    return s


def test_a_higher_class_stops_its_own_tenants_lower_jobs_when_the_quota_is_full() -> None:
    s = full_tenant()
    s.pending(job("h").gpus(4).tenant("a").priority("high").submitted(40))
    d = s.decide("masnaa", now=50)
    assert [p.job_id for p in d.preemptions] in (["a1"], ["a2"])
    assert [r.key for r in d.preemptions[0].reason] == ["victim-priority"]
    assert d.preemptions[0].beneficiary == "h"
    assert d.wait_for("h").code is WaitCode.WAITING_FOR_PREEMPTION


def test_a_gang_beyond_the_borrowing_headroom_stops_enough_of_its_own() -> None:
    # a holds 12 of its ceiling of 12; an 8-GPU job of class high must free 8 of a's,
    # and may stop none of b's (b is within its nominal and of the same class).
    s = full_tenant(borrowing=4)
    s.pending(job("h").gpus(8).tenant("a").priority("high").submitted(40))
    d = s.decide("masnaa", now=50)
    stopped = sorted(p.job_id for p in d.preemptions)
    assert "b1" not in stopped
    assert len(stopped) >= 2, stopped  # 4 GPUs each: at least 8 freed
    assert d.wait_for("h").code is WaitCode.WAITING_FOR_PREEMPTION


def test_the_swap_is_not_begun_again_while_its_victims_are_in_grace() -> None:
    s = full_tenant()
    s.pending(job("h").gpus(4).tenant("a").priority("high").submitted(40))
    first = s.decide("masnaa", now=50)
    s.apply(first, now=50)
    again = s.decide("masnaa", now=60)
    assert again.preemptions == []
    assert again.wait_for("h").code is WaitCode.WAITING_FOR_PREEMPTION


def test_a_job_of_the_same_class_still_waits_for_quota() -> None:
    s = full_tenant()
    s.pending(job("n").gpus(4).tenant("a").submitted(40))
    d = s.decide("masnaa", now=50)
    assert d.preemptions == []
    assert d.wait_for("n").code is WaitCode.QUOTA


def test_non_preemptible_own_jobs_are_not_stopped() -> None:
    s = Scene(nodes=2).quota("a", 8, borrowing_limit=0).quota("b", 8)
    s.running(job("a1").gpus(8).tenant("a").priority("high"), "n0000", start=0)
    s.running(job("b1").gpus(8).tenant("b"), "n0001", start=0)
    s.pending(job("h").gpus(4).tenant("a").priority("high").submitted(40))
    d = s.decide("masnaa", now=50)
    assert d.preemptions == []
    assert d.wait_for("h").code is WaitCode.QUOTA

