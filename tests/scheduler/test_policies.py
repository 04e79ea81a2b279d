"""Each policy, phase by phase: given this cluster and these jobs, the decision is this."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from masnaa.domain.tenancy import DEFAULT_PRIORITY_CLASSES
from masnaa.scheduler import PendingQueue, SchedulerConfig, Snapshot, WaitCode, decide

from .builders import Scene, home, job, on, started

HOUR = 3600.0


# ---------------------------------------------------------------- fifo
def test_fifo_blocks_behind_the_head() -> None:
    s = Scene(nodes=1).running(job("r").gpus(4), on("n0000", 0, 1, 2, 3), end=100)
    s.pending(job("big").gpus(8).submitted(1), job("small").gpus(1).submitted(2))
    d = s.decide("fifo", now=10)
    assert started(d) == []
    assert d.wait_for("big").code is WaitCode.NO_CAPACITY
    assert d.wait_for("big").estimated_start == 100
    assert d.wait_for("small").code is WaitCode.NOT_CONSIDERED


def test_fifo_starts_in_submit_order_until_full() -> None:
    s = Scene(nodes=1).pending(*(job(f"j{i}").gpus(3).submitted(i) for i in range(4)))
    assert started(s.decide("fifo")) == ["j0", "j1"]


# ------------------------------------------------------ fifo-backfill (EASY)
def easy_scene() -> Scene:
    # One node: 4 GPUs busy until t=100. The head needs 8 GPUs: reserved at t=100.
    s = Scene(nodes=1).running(job("r").gpus(4), on("n0000", 0, 1, 2, 3), end=100)
    s.pending(job("head").gpus(8).submitted(1))
    return s


@pytest.mark.parametrize(
    ("limit", "starts"),
    [
        (50.0, True),  # ends at 60 ≤ 100: cannot delay the reservation
        (90.0, True),  # ends at exactly 100
        (500.0, False),  # would hold GPUs the head needs at t=100
    ],
)
def test_backfill_only_jobs_that_do_not_delay_the_reservation(limit: float, starts: bool) -> None:
    s = easy_scene().pending(job("short").gpus(2).limit(limit).submitted(2))
    d = s.decide("fifo-backfill", now=10)
    assert d.reservations and d.reservations[0].job_id == "head"
    assert d.reservations[0].start_time == 100
    assert d.wait_for("head").code is WaitCode.RESERVED
    assert d.wait_for("head").estimated_start == 100
    assert ("short" in started(d)) is starts
    if starts:
        assert d.starts[0].backfilled
    else:
        assert d.wait_for("short").code is WaitCode.BACKFILL_WOULD_DELAY


def test_backfill_uses_nodes_outside_the_reservation_freely() -> None:
    s = Scene(nodes=2)
    s.running(job("r").gpus(4), on("n0000", 0, 1, 2, 3), end=100)
    s.running(job("q").gpus(8), "n0001", end=1000)
    s.pending(job("head").gpus(8).submitted(1), job("long").gpus(4).limit(1e6).submitted(2))
    d = s.decide("fifo-backfill", now=0)
    # The only place for "long" is n0000, reserved for the head: it must wait.
    assert started(d) == []
    assert d.reservations[0].nodes == ("n0000",)


def test_waiting_jobs_get_estimates_after_the_reservation() -> None:
    s = easy_scene()
    s.running(job("r2").gpus(4), on("n0000", 4, 5, 6, 7), end=300)
    s.pending(job("second").gpus(8).submitted(2))
    d = s.decide("fifo-backfill", now=0)
    assert d.wait_for("head").estimated_start == 300
    # The second 8-GPU job fits only after the head (limit 1 h) ends.
    w = d.wait_for("second")
    assert w.code is WaitCode.NO_CAPACITY
    assert w.estimated_start == 300 + HOUR


# ---------------------------------------------------------------- las
def test_las_preempts_the_job_with_most_attained_service() -> None:
    s = Scene(nodes=1)
    s.running(job("old").gpus(4).tenant("a"), on("n0000", 0, 1, 2, 3), start=0)
    s.running(job("young").gpus(4).tenant("b"), on("n0000", 4, 5, 6, 7), start=9000)
    s.pending(job("new").gpus(4).submitted(9500))
    d = s.decide("las", now=10_000)
    # old attained 4 GPUs × 10,000 s: level 2; young 4 × 1,000 s: level 1.
    assert [p.job_id for p in d.preemptions] == ["old"]
    assert d.preemptions[0].beneficiary == "new"
    assert d.preemptions[0].grace_seconds == 120
    w = d.wait_for("new")
    assert w.code is WaitCode.WAITING_FOR_PREEMPTION and w.estimated_start == 10_120


def test_las_does_not_preempt_for_a_job_of_the_same_level() -> None:
    s = Scene(nodes=1).running(job("r").gpus(8), "n0000", start=0)
    s.pending(job("again").gpus(8), attained=1e6)
    assert not s.decide("las", now=10_000).preemptions


@pytest.mark.parametrize(("now", "stopped"), [(299.0, False), (300.0, True)])
def test_las_stops_a_job_once_it_ran_the_minimum_run(now: float, stopped: bool) -> None:
    # min_run_before_preemption is 300 s: a job that ran exactly that long may go.
    s = Scene(nodes=1).running(job("r").gpus(8), "n0000", start=0, attained=1e6)
    s.pending(job("fresh").gpus(8).submitted(0))
    d = s.decide("las", now=now)
    assert [p.job_id for p in d.preemptions] == (["r"] if stopped else [])


def test_las_orders_by_level_then_arrival_and_promotes_the_starving() -> None:
    s = Scene(nodes=1)
    s.pending(job("served").gpus(8).submitted(0), attained=50_000.0)
    s.pending(job("fresh").gpus(8).submitted(100))
    assert started(s.decide("las", now=200)) == ["fresh"]
    # After the starvation limit the served job goes first again.
    assert started(s.decide("las", now=200, starvation_limit=150.0)) == ["served"]


def test_a_job_being_preempted_is_not_preempted_again_and_its_gpus_are_claimed() -> None:
    s = Scene(nodes=1).running(job("old").gpus(8), "n0000", start=0)
    s.pending(job("new").gpus(8).submitted(1))
    d1 = s.decide("las", now=10_000)
    assert [p.job_id for p in d1.preemptions] == ["old"]
    s.apply(d1, now=10_000)
    d2 = s.decide("las", now=10_010)
    assert not d2.preemptions
    assert d2.wait_for("new").code is WaitCode.WAITING_FOR_PREEMPTION


# ---------------------------------------------------------------- srtf (oracle)
def test_srtf_oracle_orders_and_preempts_by_true_remaining_work() -> None:
    s = Scene(nodes=1, oracle={"long": 10_000.0, "short": 10.0, "mid": 500.0, "run": 5_000.0})
    s.running(job("run").gpus(8), "n0000", start=0)
    s.pending(job("long").gpus(8).submitted(0), job("short").gpus(8).submitted(5))
    s.pending(job("mid").gpus(8).submitted(1))
    d = s.decide("srtf-oracle", now=1000)
    assert [p.job_id for p in d.preemptions] == ["run"]
    assert d.preemptions[0].beneficiary == "short"
    assert [p.key for p in d.preemptions[0].reason] == ["victim-oracle"]


class Tripwire(Mapping[str, float]):
    """An oracle whose every read fails the test."""

    def __getitem__(self, key: str) -> float:
        raise AssertionError(f"a non-oracle policy read the true runtime of {key}")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("a non-oracle policy iterated the oracle")

    def __len__(self) -> int:
        raise AssertionError("a non-oracle policy looked at the oracle")


@pytest.mark.parametrize("policy", ["fifo", "fifo-backfill", "las", "masnaa"])
def test_non_oracle_policies_never_read_the_oracle(policy: str) -> None:
    s = Scene(nodes=2, oracle=Tripwire())
    s.running(job("r").gpus(8), "n0000", start=0)
    s.pending(*(job(f"p{i}").gpus(4).tenant(f"t{i % 3}").submitted(i) for i in range(6)))
    d = s.decide(policy, now=20_000)
    assert d.starts  # it did real work without the oracle


def test_the_oracle_policy_fails_clearly_without_an_oracle() -> None:
    s = Scene(nodes=1).pending(job("a").gpus(1), job("b").gpus(1))
    with pytest.raises(RuntimeError, match="oracle"):
        s.decide("srtf-oracle")


# ---------------------------------------------------------------- masnaa
def test_priority_class_preempts_lower_with_its_grace() -> None:
    s = Scene(nodes=1).running(job("low").gpus(8).priority("low"), "n0000", start=0)
    s.pending(job("urgent").gpus(8).priority("high").submitted(5))
    d = s.decide("masnaa", now=10)
    assert [p.job_id for p in d.preemptions] == ["low"]
    assert [p.key for p in d.preemptions[0].reason] == ["victim-priority"]


def test_high_priority_jobs_are_never_victims() -> None:
    s = Scene(nodes=1).running(job("vip").gpus(8).priority("high"), "n0000", start=0)
    s.pending(job("other").gpus(8).priority("high").submitted(5))
    assert not s.decide("masnaa", now=1e6).preemptions


def test_higher_priority_runs_first() -> None:
    s = Scene(nodes=1).pending(
        job("n").gpus(8).submitted(0), job("h").gpus(8).priority("high").submitted(1)
    )
    assert started(s.decide("masnaa")) == ["h"]


def test_fair_share_favours_the_less_served_tenant() -> None:
    s = Scene(nodes=1).tenant("busy").tenant("idle")
    s.usage.charge("busy", 1e6, now=0)
    s.pending(job("b").gpus(8).tenant("busy").submitted(0))
    s.pending(job("i").gpus(8).tenant("idle").submitted(1))
    d = s.decide("masnaa", now=10)
    assert started(d) == ["i"]
    assert d.wait_for("b").code in (WaitCode.RESERVED, WaitCode.NO_CAPACITY)


def test_shares_weigh_usage() -> None:
    s = Scene(nodes=1).tenant("big", share=10.0).tenant("small", share=1.0)
    s.usage.charge("big", 5e5, now=0)  # 5e4 per unit of share
    s.usage.charge("small", 1e5, now=0)  # 1e5 per unit of share
    s.pending(job("s").gpus(8).tenant("small"), job("b").gpus(8).tenant("big").submitted(1))
    assert started(s.decide("masnaa", now=0)) == ["b"]


def test_one_pass_spreads_free_gpus_over_tenants() -> None:
    s = Scene(nodes=1).tenant("a").tenant("b")
    s.pending(*(job(f"a{i}").gpus(1).tenant("a").submitted(i) for i in range(8)))
    s.pending(*(job(f"b{i}").gpus(1).tenant("b").submitted(10 + i) for i in range(8)))
    d = s.decide("masnaa", now=100)
    tenants = [x.job_id[0] for x in d.starts]
    assert tenants.count("a") == 4 and tenants.count("b") == 4


def test_within_a_tenant_less_attained_service_goes_first() -> None:
    s = Scene(nodes=1)
    s.pending(job("again").gpus(8).submitted(0), attained=50_000.0)
    s.pending(job("first").gpus(8).submitted(5))
    assert started(s.decide("masnaa", now=10)) == ["first"]


def starving_scene() -> Scene:
    """The busy tenant's job has waited 7 hours; the idle tenant's job is new."""
    s = Scene(nodes=1).tenant("busy").tenant("idle")
    s.usage.charge("busy", 1e6, now=0)
    s.pending(job("old").gpus(8).tenant("busy").submitted(0))
    s.pending(job("new").gpus(8).tenant("idle").submitted(7 * HOUR))
    return s


@pytest.mark.parametrize(("ahead", "first"), [(False, "new"), (True, "old")])
def test_a_starving_job_passes_other_tenants_only_when_promoted_ahead_of_them(
    ahead: bool, first: str
) -> None:
    # Past starvation_limit (6 h) and past a 1-hour tenant limit: by default fair
    # share still orders the tenants; promote_ahead_of_tenants puts age first.
    d = starving_scene().decide(
        "masnaa", now=7 * HOUR, tenant_starvation_limit=HOUR, promote_ahead_of_tenants=ahead
    )
    assert started(d) == [first]


@pytest.mark.parametrize(
    ("now", "limit", "first"),
    [(HOUR, 2 * HOUR, "first"), (3 * HOUR, 2 * HOUR, "again"), (3 * HOUR, 0.0, "first")],
)
def test_a_job_waiting_the_tenant_limit_passes_its_tenants_lower_levels(
    now: float, limit: float, first: str
) -> None:
    s = Scene(nodes=1)
    s.pending(job("again").gpus(8).submitted(0), attained=50_000.0)
    s.pending(job("first").gpus(8).submitted(5))
    assert started(s.decide("masnaa", now=now, tenant_starvation_limit=limit)) == [first]


def test_quota_caps_borrowing_and_reports_it() -> None:
    s = Scene(nodes=2).quota("a", 8, borrowing_limit=0).quota("b", 8)
    s.pending(job("a1").gpus(8).tenant("a"), job("a2").gpus(8).tenant("a").submitted(1))
    d = s.decide("masnaa")
    assert started(d) == ["a1"]
    assert d.wait_for("a2").code is WaitCode.QUOTA
    assert d.starts[0].borrowed_gpus == 0


def test_a_job_beyond_its_tenants_quota_ceiling_is_told_it_cannot_start_as_it_is() -> None:
    s = Scene(nodes=2).quota("a", 4, borrowing_limit=2).quota("b", 8)
    # a holds 4 of its ceiling of 6: a 4-GPU job waits for a's own jobs to end, an
    # 8-GPU gang can never start while the quota stays as it is.
    s.pending(job("big").gang(2, 4).tenant("a"), job("ok").gpus(4).tenant("a").submitted(1))
    s.running(job("a1").gpus(4).tenant("a"), on("n0000", 0, 1, 2, 3))
    d = s.decide("masnaa")
    big, ok = d.wait_for("big"), d.wait_for("ok")
    assert big.code is ok.code is WaitCode.QUOTA
    assert (big.why.key, big.why.params["most"]) == ("wait-quota-ceiling", 6)
    assert ok.why.key == "wait-quota"
    assert "operator raises" in big.message


def test_borrowing_idle_capacity_is_marked_reclaimable() -> None:
    s = Scene(nodes=2).quota("a", 8).quota("b", 8)
    s.pending(job("a1").gpus(8).tenant("a"), job("a2").gpus(8).tenant("a").submitted(1))
    d = s.decide("masnaa")
    assert started(d) == ["a1", "a2"]
    assert [x.borrowed_gpus for x in d.starts] == [0, 8]


def test_lending_limit_keeps_part_of_the_nominal_free() -> None:
    s = Scene(nodes=2).quota("a", 8).quota("b", 8, lending_limit=0)
    s.pending(job("a1").gpus(8).tenant("a"), job("a2").gpus(8).tenant("a").submitted(1))
    d = s.decide("masnaa")
    assert started(d) == ["a1"]
    assert d.wait_for("a2").code is WaitCode.QUOTA


def test_a_job_that_will_reclaim_is_dated_by_the_reclaim_not_by_the_borrowers_limits() -> None:
    s = Scene(nodes=2).quota("a", 8).quota("b", 8)
    s.running(job("a1").gpus(8).tenant("a").limit(86_400), "n0000", start=0)
    s.running(job("a2").gpus(8).tenant("a").limit(86_400), "n0001", start=10)  # borrowed
    s.pending(job("b1").gpus(8).tenant("b").submitted(20),
              job("b2").gpus(8).tenant("b").submitted(21))
    d = s.decide("masnaa", now=30, reclaim_after=3_600.0, default_grace=60.0)
    b1, b2 = d.wait_for("b1"), d.wait_for("b2")
    # b1 takes back a2's 8 GPUs after waiting an hour, then a2 has its class's grace.
    grace = DEFAULT_CLASSES["normal"].grace_seconds
    assert b1.estimated_start == 20 + 3_600.0 + grace
    assert b1.why.key == "wait-reclaim" and b1.why.params["gpus"] == 8
    # Only 8 GPUs are lent: b2 is not dated by the same reclaim (and b would then
    # hold its whole nominal quota).
    assert b2.why.key != "wait-reclaim"
    assert b2.estimated_start is None or b2.estimated_start > 86_000


def test_lender_reclaims_borrowed_gpus_by_preemption() -> None:
    s = Scene(nodes=2).quota("a", 8).quota("b", 8)
    s.running(job("a1").gpus(8).tenant("a"), "n0000", start=0)
    s.running(job("a2").gpus(8).tenant("a"), "n0001", start=10)  # borrowed from b
    s.pending(job("b1").gpus(8).tenant("b").submitted(20))
    # First it waits for GPUs to free up on their own…
    assert not s.decide("masnaa", now=30).preemptions
    # …then it takes back the 8 GPUs lent to tenant a; a keeps its nominal 8.
    d = s.decide("masnaa", now=30, reclaim_after=0.0)
    assert len(d.preemptions) == 1 and d.preemptions[0].job_id in ("a1", "a2")
    assert [p.key for p in d.preemptions[0].reason] == ["victim-reclaim"]
    assert d.wait_for("b1").code is WaitCode.WAITING_FOR_PREEMPTION


def test_reclaim_takes_from_the_tenant_most_over_its_share_first() -> None:
    # Three nodes; a and c each borrow one node beyond a zero nominal. c has used far
    # more than its share, so c's job goes, though a's started first.
    s = Scene(nodes=3).quota("a", 0).quota("b", 8).quota("c", 0)
    s.tenant("a").tenant("b").tenant("c")
    s.usage.charge("c", 1e7, now=0)
    s.running(job("a1").gpus(8).tenant("a"), "n0000", start=0)
    s.running(job("c1").gpus(8).tenant("c"), "n0001", start=10)
    s.running(job("a2").gpus(8).tenant("a"), "n0002", start=20)
    s.pending(job("b1").gpus(8).tenant("b").submitted(30))
    d = s.decide("masnaa", now=1000, reclaim_after=0.0)
    assert [p.job_id for p in d.preemptions] == ["c1"]
    # Once a has used as much, and holds more, its longest-running job goes.
    s.usage.charge("a", 1e7, now=0)
    d = s.decide("masnaa", now=1000, reclaim_after=0.0)
    assert [p.job_id for p in d.preemptions] == ["a1"]


def test_a_job_preempted_before_is_the_last_victim_of_its_tenant() -> None:
    # c borrows two nodes; its older job already lost a run to a reclaim, so the
    # younger one goes this time.
    s = Scene(nodes=2).quota("b", 8).quota("c", 0).tenant("b").tenant("c")
    s.running(job("old").gpus(8).tenant("c"), "n0000", start=0, attained=3600.0)
    s.running(job("young").gpus(8).tenant("c"), "n0001", start=10)
    s.pending(job("b1").gpus(8).tenant("b").submitted(30))
    d = s.decide("masnaa", now=1000, reclaim_after=0.0)
    assert [p.job_id for p in d.preemptions] == ["young"]


@pytest.mark.parametrize(
    ("spare", "requeues", "victims"),
    [
        (0, 5, ["old"]),  # 0 spares no one
        (2, 1, ["old"]),  # stopped once: still the oldest borrower, still the victim
        (2, 2, ["young"]),  # stopped twice: spared, the other borrowed job goes
    ],
)
def test_a_job_requeued_often_is_spared_by_its_equals(
    spare: int, requeues: int, victims: list[str]
) -> None:
    s = Scene(nodes=2).quota("b", 8).quota("c", 0).tenant("b").tenant("c")
    s.running(job("old").gpus(8).tenant("c"), "n0000", start=0, requeues=requeues)
    s.running(job("young").gpus(8).tenant("c"), "n0001", start=10)
    s.pending(job("b1").gpus(8).tenant("b").submitted(30))
    d = s.decide("masnaa", now=1000, reclaim_after=0.0, spare_after_requeues=spare)
    assert [p.job_id for p in d.preemptions] == victims


def test_a_spared_job_still_yields_to_a_higher_priority_class() -> None:
    s = Scene(nodes=1).quota("b", 8).quota("c", 0).tenant("b").tenant("c")
    s.running(job("c1").gpus(8).tenant("c"), "n0000", start=0, requeues=3)
    s.pending(job("b1").gpus(8).tenant("b").submitted(30))
    d = s.decide("masnaa", now=1000, reclaim_after=0.0, spare_after_requeues=2)
    assert d.preemptions == []  # a reclaim: one of its equals
    s.pending(job("urgent").gpus(8).tenant("b").priority("high").submitted(40))
    d = s.decide("masnaa", now=1000, reclaim_after=0.0, spare_after_requeues=2)
    assert [p.job_id for p in d.preemptions] == ["c1"]


def test_reclaim_looks_only_at_tenants_beyond_nominal() -> None:
    # "hog" is the most served tenant but within its nominal quota: its four jobs are
    # no reclaim victims, and must not use up the scan before c's borrowed job is seen.
    s = Scene(nodes=2).quota("hog", 8).quota("b", 8).quota("c", 0)
    s.tenant("hog").tenant("b").tenant("c")
    s.usage.charge("hog", 1e8, now=0)
    for i in range(4):
        s.running(job(f"h{i}").gpus(2).tenant("hog"), on("n0000", 2 * i, 2 * i + 1), start=i)
    s.running(job("c1").gpus(8).tenant("c"), "n0001", start=10)
    s.pending(job("b1").gpus(8).tenant("b").submitted(30))
    d = s.decide("masnaa", now=1000, reclaim_after=0.0, victim_scan_limit=2)
    assert [p.job_id for p in d.preemptions] == ["c1"]


def test_gpus_being_freed_go_only_to_a_job_that_could_have_preempted_for_them() -> None:
    # c1 is being preempted (a reclaim by b). d1 is ahead of b1 in line but has no
    # right to stop c1: it may not take c1's GPUs, or b1 would reclaim anew.
    s = Scene(nodes=2).quota("b", 8).quota("c", 0).quota("d", 0).quota("x", 8)
    s.tenant("b").tenant("c").tenant("d").tenant("x")
    s.running(job("c1").gpus(8).tenant("c"), "n0000", start=0)
    s.running(job("x1").gpus(8).tenant("x"), "n0001", start=0)
    s.state.mark_preempting("c1", 1100.0)
    s.pending(job("d1").gpus(8).tenant("d").submitted(1))
    s.pending(job("b1").gpus(8).tenant("b").submitted(2))
    d = s.decide("masnaa", now=1000, reclaim_after=0.0)
    assert d.preemptions == []
    assert d.wait_for("b1").code is WaitCode.WAITING_FOR_PREEMPTION
    assert d.wait_for("d1").code is not WaitCode.WAITING_FOR_PREEMPTION


def test_reclaim_never_pushes_the_lender_below_its_nominal() -> None:
    s = Scene(nodes=2).quota("a", 12).quota("b", 4)
    s.running(job("a1").gpus(8).tenant("a"), "n0000", start=0)
    s.running(job("a2").gpus(8).tenant("a"), "n0001", start=10)  # a uses 16 of nominal 12
    s.pending(job("b1").gpus(4).tenant("b").submitted(20))
    # Preempting either 8-GPU job would leave a with 8 < 12: no reclaim.
    d = s.decide("masnaa", now=30, reclaim_after=0.0, fair_share_preemption=False)
    assert not d.preemptions


def _one_gpu_jobs_of_a(s: Scene, node: str, gpus: range, start: float) -> None:
    for k, g in enumerate(gpus):
        s.running(job(f"a{node[-1]}{g}").gpus(1).tenant("a"), on(node, g), start=start + k)


def test_a_reclaim_within_the_lenders_excess_still_happens() -> None:
    # a holds 10 one-GPU jobs against a nominal of 8, the two on n0001 the oldest:
    # freeing them frees n0001 whole for b's gang, and a keeps its nominal 8.
    s = Scene(nodes=2).quota("a", 8).quota("b", 8).tenant("a").tenant("b")
    _one_gpu_jobs_of_a(s, "n0001", range(2), start=0)
    _one_gpu_jobs_of_a(s, "n0000", range(8), start=100)
    s.pending(job("b1").gpus(8).tenant("b").submitted(300))
    d = s.decide("masnaa", now=10_000, reclaim_after=0.0)
    assert sorted(p.job_id for p in d.preemptions) == ["a10", "a11"]


def _long_job_scene(tenant: str) -> Scene:
    # One node, held by a job that has used 20 GPU-hours (level 2) and checkpoints
    # every 1,800 s of its run, which began at t=0.
    s = Scene(nodes=1).tenant("a").tenant("b")
    s.running(job("long").gpus(8).tenant(tenant), "n0000", start=0, attained=72_000.0,
              checkpoint_every=1_800.0)
    s.pending(job("new").gpus(1).tenant("a").submitted(3_000))
    return s


SHORT_FIRST = {"short_first_in_tenant": True}


@pytest.mark.parametrize(
    ("now", "preempted"),
    [
        (3_700.0, True),  # 100 s after its second checkpoint: it loses 100 s of work
        (4_500.0, False),  # 900 s after it: it would lose too much
    ],
)
def test_short_first_in_tenant_stops_a_long_job_just_past_a_checkpoint(
    now: float, preempted: bool
) -> None:
    s = _long_job_scene("a")
    d = s.decide("masnaa", now=now, **SHORT_FIRST)
    assert [p.job_id for p in d.preemptions] == (["long"] if preempted else [])
    if preempted:
        assert [p.key for p in d.preemptions[0].reason] == ["victim-same-tenant"]
    assert not s.decide("masnaa", now=now).preemptions  # off by default


def test_short_first_in_tenant_never_stops_another_tenants_job() -> None:
    s = _long_job_scene("b")
    assert not s.decide("masnaa", now=3_700.0, **SHORT_FIRST).preemptions


def test_short_first_in_tenant_spares_jobs_below_the_victim_level() -> None:
    s = Scene(nodes=1).tenant("a")
    # 3,700 s on 8 GPUs: 8.2 GPU-hours, level 1, below the default victim_min_level of 2.
    s.running(job("mid").gpus(8).tenant("a"), "n0000", start=0, checkpoint_every=1_800.0)
    s.pending(job("new").gpus(1).tenant("a").submitted(3_000))
    assert not s.decide("masnaa", now=3_700.0, **SHORT_FIRST).preemptions
    d = s.decide("masnaa", now=3_700.0, victim_min_level=1, **SHORT_FIRST)
    assert [p.job_id for p in d.preemptions] == ["mid"]


def test_min_run_protects_fresh_jobs_from_fair_share_preemption() -> None:
    s = Scene(nodes=1).tenant("hog").tenant("new")
    s.usage.charge("hog", 1e7, now=0)
    s.running(job("h").gpus(8).tenant("hog"), "n0000", start=0, attained=1e6)
    s.pending(job("n").gpus(8).tenant("new").submitted(50))
    on = {"fair_share_preemption": True}
    assert not s.decide("masnaa", now=100, **on).preemptions  # ran 100 s < 300 s
    assert not s.decide("masnaa", now=299, **on).preemptions
    assert [p.job_id for p in s.decide("masnaa", now=300, **on).preemptions] == ["h"]
    assert [p.job_id for p in s.decide("masnaa", now=1000, **on).preemptions] == ["h"]
    assert not s.decide("masnaa", now=1000).preemptions  # off by default


@pytest.mark.parametrize(("attained", "swapped"), [(30_000.0, True), (40_000.0, False)])
def test_fair_share_preemption_needs_a_victim_at_a_higher_service_level(
    attained: float, swapped: bool
) -> None:
    # The victim has had 2,000 GPU-hours: level 2. A waiting job that has had 8.3
    # GPU-hours (level 1) may swap with it; one that has had 11.1 (level 2) may not.
    s = Scene(nodes=1).tenant("hog").tenant("new")
    s.usage.charge("hog", 1e7, now=0)
    s.running(job("h").gpus(8).tenant("hog"), "n0000", start=0, attained=1e6)
    s.pending(job("n").gpus(8).tenant("new").submitted(50), attained=attained)
    d = s.decide("masnaa", now=1000, fair_share_preemption=True)
    assert [p.job_id for p in d.preemptions] == (["h"] if swapped else [])


def test_fair_share_preemption_never_swaps_back() -> None:
    # Two equal tenants with equal usage: neither may preempt the other.
    s = Scene(nodes=1).tenant("a").tenant("b")
    s.running(job("ra").gpus(8).tenant("a"), "n0000", start=0, attained=1e6)
    s.pending(job("pb").gpus(8).tenant("b").submitted(0))
    s.usage.charge("b", 8 * 3600 * 2.0, now=0)
    assert not s.decide("masnaa", now=3600, fair_share_preemption=True).preemptions


# ---------------------------------------------------------- allocations
def test_allocation_balance_is_checked_within_the_pass() -> None:
    s = Scene(nodes=3)
    s.balances = {"t1-p": home(2 * 8 * HOUR - 1), "t2-p": home(0.0)}
    s.pending(*(job(f"a{i}").gpus(4).limit(HOUR).submitted(i) for i in range(4)))
    s.pending(job("b").gpus(1).tenant("t2").submitted(9))
    s.pending(job("c").gpus(1).tenant("t3").submitted(10))  # no entry: not enforced
    d = s.decide("masnaa")
    # 4 GPU-hours each: a0..a3 start while the balance minus committed work stays > 0.
    assert sorted(started(d)) == ["a0", "a1", "a2", "a3", "c"]
    s.balances = {"t1-p": home(2 * 4 * HOUR), "t2-p": home(0.0)}
    d = s.decide("masnaa")
    assert sorted(started(d)) == ["a0", "a1", "c"]
    assert d.wait_for("a2", "t1-p").code is WaitCode.ALLOCATION_EXHAUSTED
    assert d.wait_for("b", "t2-p").code is WaitCode.ALLOCATION_EXHAUSTED
    assert sorted(d.spent) == ["t1-p", "t2-p"]


# ---------------------------------------------------------- purity & contract
def test_decide_does_not_touch_its_inputs() -> None:
    s = Scene(nodes=2).running(job("r").gpus(8), "n0000", start=0)
    s.pending(*(job(f"p{i}").gpus(4).submitted(i) for i in range(5)))
    before = (s.state.free_total, dict(s.state.running), list(s.queue), s.usage.usage("t1", 50))
    for policy in ("fifo", "fifo-backfill", "las", "masnaa"):
        s.decide(policy, now=50)
    after = (s.state.free_total, dict(s.state.running), list(s.queue), s.usage.usage("t1", 50))
    assert before == after


def test_queue_thresholds_must_match_config() -> None:
    s = Scene(nodes=1)
    q = PendingQueue(level_thresholds=(10.0,))
    with pytest.raises(ValueError, match="las_thresholds"):
        decide(Snapshot(s.state, s.usage), q, 0.0, SchedulerConfig())


def test_scan_stops_when_nothing_more_fits() -> None:
    s = Scene(nodes=1).running(job("r").gpus(8), "n0000", start=0)
    s.pending(*(job(f"p{i}").gpus(1).submitted(i) for i in range(50)))
    d = s.decide("fifo-backfill", now=1)
    assert not d.starts
    # The head is reserved; only estimate_depth more are explained one by one.
    assert d.wait_for("p0").code is WaitCode.RESERVED
    assert len(d.waiting) == 1 + SchedulerConfig().estimate_depth
    assert d.wait_for("p5").estimated_start == 3600
    assert d.default_wait.code is WaitCode.NO_CAPACITY
    assert d.wait_for("p40").code is WaitCode.NO_CAPACITY


def test_backfill_depth_bounds_the_scan() -> None:
    s = Scene(nodes=1).running(job("r").gpus(6), "n0000", start=0, end=100)
    s.pending(job("head").gpus(8).submitted(0))
    s.pending(*(job(f"p{i}").gpus(4).submitted(1 + i) for i in range(20)))
    s.pending(job("tiny").gpus(1).limit(10).submitted(99))
    d = s.decide("fifo-backfill", now=1, backfill_depth=5)
    assert d.wait_for("head").code is WaitCode.RESERVED
    assert len(d.waiting) == 6  # the head and five more
    assert d.wait_for("tiny").code is WaitCode.NOT_CONSIDERED
    assert started(s.decide("fifo-backfill", now=1)) == ["tiny"]


DEFAULT_CLASSES = {c.name: c for c in DEFAULT_PRIORITY_CLASSES}
