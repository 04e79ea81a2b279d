"""The scheduler's rules at their edges: limits reached exactly, budgets spent, ties.

Each test pins one rule that the phase tests cross only in its middle: flipping a
comparison or a boolean in the rule makes it fail.
"""

from __future__ import annotations

import pytest

from masnaa.scheduler import (
    DEFAULT_LAS_THRESHOLDS,
    PendingQueue,
    SchedulerConfig,
    UsageLedger,
    WaitCode,
)
from masnaa.scheduler.config import knob
from masnaa.scheduler.place import best_placement
from masnaa.scheduler.view import View

from .builders import Scene, job, mixed_types, nodes_of, on, started, with_sites

HOUR = 3600.0


# ------------------------------------------------------------------ starvation
@pytest.mark.parametrize(("now", "first"), [(149.0, "fresh"), (150.0, "served")])
def test_las_promotes_a_job_from_the_instant_it_waited_the_limit(now: float, first: str) -> None:
    s = Scene(nodes=1)
    s.pending(job("served").gpus(8).submitted(0), attained=50_000.0)
    s.pending(job("fresh").gpus(8).submitted(100))
    assert started(s.decide("las", now=now, starvation_limit=150.0)) == [first]


def test_a_starvation_limit_of_zero_promotes_no_one() -> None:
    s = Scene(nodes=1)
    s.pending(job("served").gpus(8).submitted(0), attained=50_000.0)
    s.pending(job("fresh").gpus(8).submitted(100))
    assert started(s.decide("las", now=30 * 86400.0, starvation_limit=0.0)) == ["fresh"]


@pytest.mark.parametrize(("now", "first"), [(2 * HOUR - 1, "first"), (2 * HOUR, "again")])
def test_masnaa_promotes_within_the_tenant_from_the_instant_it_waited_the_limit(
    now: float, first: str
) -> None:
    s = Scene(nodes=1)
    s.pending(job("again").gpus(8).submitted(0), attained=50_000.0)
    s.pending(job("first").gpus(8).submitted(5))
    assert started(s.decide("masnaa", now=now, tenant_starvation_limit=2 * HOUR)) == [first]


# ---------------------------------------------------------------------- quotas
def test_a_job_within_its_nominal_is_not_held_back_by_another_tenants_lending_limit() -> None:
    # c runs on one node; b never lends its 8 GPUs. a asks for exactly its nominal:
    # that is its own, whatever b keeps back.
    s = Scene(nodes=2).quota("a", 8).quota("b", 8, lending_limit=0).quota("c", 0)
    s.running(job("c1").gpus(8).tenant("c"), "n0001", start=0)
    s.pending(job("a1").gpus(8).tenant("a").submitted(1))
    assert started(s.decide("masnaa", now=2)) == ["a1"]


@pytest.mark.parametrize(("limit", "starts"), [(8, True), (7, False)])
def test_borrowing_up_to_the_borrowing_limit_exactly_is_allowed(limit: int, starts: bool) -> None:
    s = Scene(nodes=3).quota("a", 8, borrowing_limit=limit).quota("b", 16)
    s.running(job("a1").gpus(8).tenant("a"), "n0000", start=0)
    s.pending(job("a2").gpus(8).tenant("a").submitted(1))
    d = s.decide("masnaa", now=2)
    assert started(d) == (["a2"] if starts else [])
    if not starts:
        assert d.wait_for("a2").code is WaitCode.QUOTA


def test_a_job_its_quota_holds_back_does_not_stop_the_scan() -> None:
    # b has used far more than a, so a's job comes first in fair-share order.
    s = Scene(nodes=3).quota("a", 8, borrowing_limit=0).quota("b", 16).tenant("a").tenant("b")
    s.usage.charge("b", 1e7, now=0)
    s.running(job("a1").gpus(8).tenant("a"), "n0000", start=0)
    s.pending(job("a2").gpus(8).tenant("a").submitted(1))
    s.pending(job("b1").gpus(8).tenant("b").submitted(2))
    d = s.decide("masnaa", now=3)
    assert started(d) == ["b1"]
    assert d.wait_for("a2").code is WaitCode.QUOTA


# --------------------------------------------------------------------- reclaim
def reclaim_scene(victim_class: str) -> Scene:
    """a borrows b's node with a job of ``victim_class``; b's low-class job waits."""
    s = Scene(nodes=2).quota("a", 8).quota("b", 8).tenant("a").tenant("b")
    s.running(job("a1").gpus(8).tenant("a").priority(victim_class), "n0000", start=0)
    s.running(job("a2").gpus(8).tenant("a").priority(victim_class), "n0001", start=10)
    s.pending(job("b1").gpus(8).tenant("b").priority("low").submitted(20))
    return s


@pytest.mark.parametrize(("victim_class", "reclaimed"), [("low", True), ("normal", False)])
def test_a_reclaim_never_stops_a_job_of_a_higher_class(victim_class: str, reclaimed: bool) -> None:
    d = reclaim_scene(victim_class).decide("masnaa", now=1000, reclaim_after=0.0)
    assert bool(d.preemptions) is reclaimed


@pytest.mark.parametrize(("now", "reclaimed"), [(119.0, False), (120.0, True)])
def test_a_job_reclaims_from_the_instant_it_waited_reclaim_after(
    now: float, reclaimed: bool
) -> None:
    d = reclaim_scene("low").decide("masnaa", now=now, reclaim_after=100.0)
    assert bool(d.preemptions) is reclaimed


# --------------------------------------------------------------------- budgets
def crowded_node(gpus: int = 3) -> Scene:
    """Eight 1-GPU jobs of the low class fill one node; a high-class job waits."""
    s = Scene(nodes=1)
    for g in range(8):
        s.running(job(f"r{g}").gpus(1).priority("low"), on("n0000", g), start=0)
    s.pending(job("urgent").gpus(gpus).priority("high").submitted(1))
    return s


@pytest.mark.parametrize(("victims", "stopped"), [(2, 0), (3, 3)])
def test_a_job_never_stops_more_than_max_victims_per_job(victims: int, stopped: int) -> None:
    d = crowded_node().decide("masnaa", now=10, max_victims_per_job=victims)
    assert len(d.preemptions) == stopped


@pytest.mark.parametrize(
    ("gpus", "cap", "stopped"), [(1, 0, 0), (1, 1, 1), (3, 0, 0), (3, 2, 0), (3, 3, 3)]
)
def test_a_pass_never_stops_more_than_max_preemptions_per_pass(
    gpus: int, cap: int, stopped: int
) -> None:
    d = crowded_node(gpus).decide("masnaa", now=10, max_preemptions_per_pass=cap)
    assert len(d.preemptions) == stopped


@pytest.mark.parametrize(("limit", "stopped"), [(0, 0), (1, 1)])
def test_the_victim_scan_limit_counts_the_candidates_it_may_look_at(
    limit: int, stopped: int
) -> None:
    s = Scene(nodes=1).running(job("low").gpus(8).priority("low"), "n0000", start=0)
    s.pending(job("urgent").gpus(8).priority("high").submitted(1))
    d = s.decide("masnaa", now=10, victim_scan_limit=limit)
    assert len(d.preemptions) == stopped


@pytest.mark.parametrize("estimate_depth", [0, 20])
def test_a_job_whose_pools_hold_no_victim_spends_no_preemption_attempt(
    estimate_depth: int
) -> None:
    # The H100 node runs a job too young to stop: the H100 job ahead finds no one to
    # stop there, and the one attempt of the pass stays for the L40S job behind it,
    # whether or not the pass estimates starts.
    s = Scene(cluster=mixed_types(1, 1))
    s.running(job("old").gpus(8).types("l40s"), "l0000", start=0, gpu_type="l40s")
    s.running(job("young").gpus(8), "h0000", start=1_990)
    s.pending(job("h").gpus(8).submitted(1))
    s.pending(job("l").gpus(8).types("l40s").submitted(2))
    d = s.decide(
        "las", now=2_000, preemption_attempts_per_pass=1, estimate_depth=estimate_depth
    )
    assert [(p.job_id, p.beneficiary) for p in d.preemptions] == [("old", "l")]


def test_the_oracle_never_stops_a_job_already_in_its_grace_period() -> None:
    # The oracle stops the job with the most work left (long) for the short one. In
    # the next pass long is in its grace period, its GPUs claimed by the short job: the
    # later job stops mid, and no one asks long to stop again.
    s = Scene(nodes=1)
    s.running(job("long").gpus(4), on("n0000", 0, 1, 2, 3), start=0)
    s.running(job("mid").gpus(4), on("n0000", 4, 5, 6, 7), start=0)
    s.oracle = {"long": 10_000.0, "mid": 500.0, "short": 100.0, "later": 200.0}
    s.pending(job("short").gpus(4).submitted(1))
    first = s.decide("srtf-oracle", now=1000)
    assert [p.job_id for p in first.preemptions] == ["long"]
    s.apply(first, now=1000)
    s.pending(job("later").gpus(4).submitted(1001))
    second = s.decide("srtf-oracle", now=1010)
    assert [p.job_id for p in second.preemptions] == ["mid"]


# ------------------------------------------------------------------- the scan
def test_a_job_that_can_never_run_does_not_hold_a_fifo_line() -> None:
    s = Scene(nodes=1).pending(job("huge").gpus(16), job("small").gpus(8).submitted(1))
    d = s.decide("fifo")
    assert d.rejected["huge"].code is WaitCode.TOO_LARGE
    assert started(d) == ["small"]


def test_las_merges_tenants_by_level_then_arrival_job_by_job() -> None:
    # a's two jobs and b's one are all at level 0: arrival order is a1, b1, a2, and
    # two of them fit. a's second job must wait for b's older one.
    s = Scene(nodes=1)
    s.pending(job("a1").gpus(4).tenant("a").submitted(0))
    s.pending(job("a2").gpus(4).tenant("a").submitted(10))
    s.pending(job("b1").gpus(4).tenant("b").submitted(5))
    assert started(s.decide("las", now=20)) == ["a1", "b1"]


def test_of_equally_good_leaves_a_gang_takes_the_first() -> None:
    s = Scene(nodes=8, nodes_per_leaf=4).pending(job("g").gang(2, 8))
    assert set(nodes_of(s.decide("fifo"), "g")) == {"n0000", "n0001"}


def test_a_gang_fits_a_pool_whose_free_gpus_are_exactly_its_size() -> None:
    # One node is busy until 500: the reservation of a 2-node gang starts then, when
    # the two nodes' 16 GPUs are all free, not later.
    s = Scene(nodes=2).running(job("r").gpus(8), "n0001", start=0, end=500)
    s.pending(job("g").gang(2, 8).submitted(1))
    d = s.decide("fifo-backfill", now=10)
    assert d.reservations[0].job_id == "g" and d.reservations[0].start_time == 500


# ------------------------------------------------------------------------- las
@pytest.mark.parametrize(("earlier", "stopped"), [(0.0, False), (399.0, False), (400.0, True)])
def test_las_stops_a_job_once_its_service_reaches_the_next_level(
    earlier: float, stopped: bool
) -> None:
    # At now = 400 the running 8-GPU job holds ``earlier`` + 3,200 GPU-seconds: below
    # the first level's end (1 GPU-hour), or exactly on it. A new job (level 0) may stop
    # only a job above its own level.
    assert DEFAULT_LAS_THRESHOLDS[0] == 3600.0
    s = Scene(nodes=1).running(job("r").gpus(8), "n0000", start=0, attained=earlier)
    s.pending(job("new").gpus(1).tenant("b").submitted(10))
    d = s.decide("las", now=400)
    assert bool(d.preemptions) is stopped
    if stopped:
        # las ranks by service alone: its reason says nothing of tenants.
        (reason,) = d.preemptions[0].reason
        assert reason.key == "victim-less-service" and "tenant" not in str(reason)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("knobs", "valid"),
    [
        ({"fair_share_horizon": 0.0}, True),
        ({"las_thresholds": (0.0, 10.0)}, False),
        ({"las_thresholds": (1.0, 10.0)}, True),
    ],
)
def test_knobs_at_the_edge_of_their_range(knobs: dict[str, object], valid: bool) -> None:
    if valid:
        SchedulerConfig(**knobs)  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match="positive"):
            SchedulerConfig(**knobs)  # type: ignore[arg-type]


def test_queue_thresholds_must_be_positive_and_usage_may_be_charged_nothing() -> None:
    with pytest.raises(ValueError, match="positive"):
        PendingQueue(level_thresholds=(0.0, 10.0))
    u = UsageLedger(half_life=86400.0)
    u.charge("t", 0.0, now=0.0)
    assert u.usage("t", now=0.0) == 0.0


# ----------------------------------------------------------------------- swaps
def long_job(start: float = 0.0) -> Scene:
    """Tenant a's 8-GPU job, 20 GPU-hours served (level 2), checkpointing every 1,800 s
    of a run begun at ``start``; a 1-GPU job of a waits."""
    s = Scene(nodes=1).tenant("a")
    s.running(
        job("long").gpus(8).tenant("a"),
        "n0000",
        start=start,
        attained=72_000.0,
        checkpoint_every=1_800.0,
    )
    s.pending(job("new").gpus(1).tenant("a").submitted(start))
    return s


@pytest.mark.parametrize(("now", "stopped"), [(3_900.0, True), (3_901.0, False)])
def test_short_first_stops_a_job_that_loses_exactly_the_most_it_may(
    now: float, stopped: bool
) -> None:
    # 300 s after its checkpoint at 3,600 s it loses 300 s, the default victim_max_loss.
    d = long_job().decide("masnaa", now=now, short_first_in_tenant=True)
    assert bool(d.preemptions) is stopped


@pytest.mark.parametrize(("now", "stopped"), [(3_799.0, False), (3_800.0, True)])
def test_short_first_spares_a_run_younger_than_the_minimum_run(now: float, stopped: bool) -> None:
    # The run began at 3,500 s: at 3,800 s it has run the minimum 300 s.
    d = long_job(start=3_500.0).decide("masnaa", now=now, short_first_in_tenant=True)
    assert bool(d.preemptions) is stopped


def test_short_first_never_swaps_jobs_of_one_service_level() -> None:
    s = long_job()
    s.queue.remove("new")
    s.pending(job("served").gpus(1).tenant("a"), attained=40_000.0)  # level 2 as well
    assert not s.decide("masnaa", now=3_700.0, short_first_in_tenant=True).preemptions


def test_fair_share_preemption_swaps_within_a_tenant_by_service_alone() -> None:
    # One tenant: no ratio to compare, the job with less service goes first.
    d = long_job().decide("masnaa", now=3_700.0, fair_share_preemption=True)
    assert [p.job_id for p in d.preemptions] == ["long"]
    assert [p.key for p in d.preemptions[0].reason] == ["victim-same-tenant"]


def test_without_a_site_rule_the_tightest_pool_wins_and_ties_go_to_the_first() -> None:
    s = Scene(cluster=with_sites(("ma-1", 1), ("za-1", 1)))
    view = View(s.state)
    pools = list(s.state._pools)
    one = job("one").gpus(4).build()
    placed = best_placement(view, pools, one)
    assert placed is not None and placed[1].site == "ma-1"
    # Four GPUs taken at ma-1 make za-1 the looser fit for a 4-GPU job: ma-1 again.
    view.take(((0, 0b1111),))
    placed = best_placement(view, pools, one)
    assert placed is not None and placed[1].site == "ma-1"
    # Two more make ma-1 too small: za-1.
    view.take(((0, 0b110000),))
    placed = best_placement(view, pools, one)
    assert placed is not None and placed[1].site == "za-1"
    # ma-1 empty again and za-1 half full: za-1 is the tighter fit, though second.
    view.give(((0, 0b111111),))
    view.take(((1, 0b1111),))
    placed = best_placement(view, pools, one)
    assert placed is not None and placed[1].site == "za-1"


# --------------------------------------------------- what a blocked job still gets
def test_a_preemptive_policy_out_of_preemptions_still_reserves_for_the_blocked_job() -> None:
    s = Scene(nodes=2).running(job("r").gpus(8).priority("high"), "n0001", start=0, end=500)
    s.running(job("s").gpus(4).priority("high"), on("n0000", 0, 1, 2, 3), start=0, end=900)
    s.pending(job("g").gang(2, 8).submitted(1))
    d = s.decide("masnaa", now=10, max_preemptions_per_pass=0)
    assert not d.starts and not d.preemptions
    assert [(r.job_id, r.start_time) for r in d.reservations] == [("g", 900)]


def test_a_job_with_no_right_to_the_gpus_being_freed_still_gets_its_estimate() -> None:
    # x is being stopped (its grace ends at 300); a low-class gang may claim none of
    # its GPUs and may stop no one, so it waits as any blocked job, with an estimate.
    # (No reservation: GPUs being freed are left to whoever they were freed for.)
    s = Scene(nodes=2).running(job("r").gpus(8).priority("high"), "n0001", start=0, end=500)
    s.running(job("x").gpus(8).priority("low"), "n0000", start=0, end=10_000)
    s.state.mark_preempting("x", 300.0)
    s.pending(job("g").gang(2, 8).priority("low").submitted(1))
    d = s.decide("masnaa", now=10, max_preemptions_per_pass=0)
    assert not d.starts and not d.preemptions and not d.reservations
    wait = d.wait_for("g")
    assert wait.code is WaitCode.NO_CAPACITY and wait.estimated_start == 500


def test_a_tenant_beyond_its_nominal_may_still_preempt_by_priority() -> None:
    # a has no nominal quota here: it borrows; its high-class job still outranks b's
    # low-class one, which the class rule may stop.
    s = Scene(nodes=1).quota("a", 0).quota("b", 8)
    s.running(job("b1").gpus(8).tenant("b").priority("low"), "n0000", start=0)
    s.pending(job("a1").gpus(8).tenant("a").priority("high").submitted(1))
    d = s.decide("masnaa", now=10)
    assert [p.job_id for p in d.preemptions] == ["b1"]
    assert [p.key for p in d.preemptions[0].reason] == ["victim-priority"]


def test_a_tenant_with_no_share_comes_after_every_other() -> None:
    s = Scene(nodes=1).tenant("a", share=0.0).tenant("b")
    s.pending(job("a1").gpus(8).tenant("a").submitted(0))
    s.pending(job("b1").gpus(8).tenant("b").submitted(1))
    assert started(s.decide("masnaa", now=2)) == ["b1"]


@pytest.mark.parametrize("text", ["no_such_knob=1", "backfill_depth"])
def test_a_knob_must_be_a_known_name_with_a_value(text: str) -> None:
    with pytest.raises(ValueError, match="valid knobs"):
        knob(text)


@pytest.mark.parametrize("policy", ["fifo-backfill", "masnaa"])
def test_the_scan_goes_on_while_the_largest_free_room_fits_the_smallest_task(policy: str) -> None:
    # Two GPUs free; the head wants eight and is reserved for; a 2-GPU job that ends
    # before the reservation fills the room exactly.
    s = Scene(nodes=1).running(job("r").gpus(6), "n0000", start=0, end=100)
    s.pending(job("head").gpus(8).submitted(0))
    s.pending(job("pair").gpus(2).limit(50).submitted(1))
    assert started(s.decide(policy, now=10)) == ["pair"]


# ------------------------------------------------------------------ the oracle
@pytest.mark.parametrize(
    ("now", "left", "stopped"),
    [(299.0, 10_000.0, False), (300.0, 10_000.0, True), (300.0, 100.0, False)],
)
def test_the_oracle_stops_a_longer_job_that_ran_the_minimum_run(
    now: float, left: float, stopped: bool
) -> None:
    # Both jobs hold 8 GPUs; the waiting one has 100 s of work left, the running one
    # ``left`` s, and may be stopped once it has run 300 s. Equal work is no reason.
    s = Scene(nodes=1).running(job("r").gpus(8), "n0000", start=0)
    s.pending(job("short").gpus(8).submitted(1))
    s.oracle = {"r": left, "short": 100.0}
    d = s.decide("srtf-oracle", now=now)
    assert bool(d.preemptions) is stopped


def test_a_job_on_a_busy_cluster_is_told_how_many_gpus_are_free() -> None:
    # Behind the reserved first job. No GPU free: "busy", not "too few on the same
    # nodes", which is for free GPUs spread out.
    s = Scene(nodes=1).running(job("r").gpus(8), "n0000")
    s.pending(job("first").gpus(8).submitted(0), job("one").gpus(1).submitted(1))
    busy = s.decide("masnaa", now=5).wait_for("one").why
    assert (busy.key, busy.params["free"]) == ("wait-busy", 0)
    spread = Scene(nodes=2)
    spread.running(job("x").gpus(6), on("n0000", 0, 1, 2, 3, 4, 5))
    spread.running(job("y").gpus(6), on("n0001", 0, 1, 2, 3, 4, 5))
    spread.pending(job("first").gpus(8).submitted(0), job("four").gpus(4).submitted(1))
    apart = spread.decide("masnaa", now=5).wait_for("four").why
    assert (apart.key, apart.params["free"]) == ("wait-not-together", 4)
