"""The event engine on tiny scenarios whose outcome is worked out by hand."""

from __future__ import annotations

import dataclasses
import heapq
import math

import pytest
from twin_builders import deadline, jcts, replay, run, trace

from masnaa.domain import Cluster, Placement, PlacementSlice
from masnaa.sim.engine import DONE, END, REJECTED, RUNS_LOST_LIMIT, STRANDED, Engine
from masnaa.sim.errors import InvariantViolation
from masnaa.sim.limits import LimitEstimator
from masnaa.sim.metrics import summarize
from masnaa.sim.records import EngineConfig
from masnaa.sim.shape import tenancy


def test_two_whole_node_jobs_run_one_after_the_other_under_fifo() -> None:
    # 8 GPUs. A (8 GPUs, 100 s) at t=0; B (8 GPUs, 50 s) at t=10 waits for A.
    r = run(trace((0, 100, 8, "a"), (10, 50, 8, "b")), policy="fifo")
    assert jcts(r) == [100.0, 140.0]
    assert r.preemptions == 0 and r.rejected == {}


def test_two_half_node_jobs_share_the_node() -> None:
    r = run(trace((0, 100, 4, "a"), (10, 50, 4, "b")), policy="fifo")
    assert jcts(r) == [100.0, 50.0]


def test_fifo_head_of_line_blocks_a_small_job() -> None:
    # A holds 6 of 8 GPUs until 100; B (8) waits; C (1) arrives later and under plain
    # fifo must not overtake B, so it starts when B is done at 100 + 10 = 110.
    r = run(trace((0, 100, 6, "a"), (1, 10, 8, "a"), (2, 5, 1, "a")), policy="fifo")
    assert [r.end[i] for i in range(3)] == [100.0, 110.0, 115.0]


def test_job_larger_than_the_cluster_is_rejected_and_counted() -> None:
    r = run(trace((0, 100, 16, "a"), (5, 10, 1, "a")), policy="fifo")
    assert r.status[0] == REJECTED and r.status[1] == DONE
    assert r.rejected == {"too-large": 1}
    assert r.end[1] - r.submit[1] == 10.0


def test_requested_limit_kills_the_job_there() -> None:
    # Asked for 50 s, needed 80 s: killed at 50; the next job starts then.
    r = run(trace((0, 80, 8, "a", 50), (1, 10, 8, "a", 100)), policy="fifo")
    assert [r.end[0], r.end[1]] == [50.0, 60.0]
    assert r.killed_at_limit == 1 and r.work[0] == 50.0


def test_derived_estimate_is_extended_not_enforced() -> None:
    # No limit: the first job plans with the 4 h default, runs 10 h, and is not killed.
    e = replay(trace((0, 36_000, 8, "a")), policy="fifo-backfill")
    assert e.finish[0] == 36_000.0
    # Estimates 4 h → doubled at 4 h (8 h) → doubled at 8 h (16 h) > 10 h.
    assert e.extensions == 2


def test_las_preempts_a_long_job_for_a_short_one_and_charges_lost_work() -> None:
    # A: 8 GPUs for 100,000 s from t=0. At t=10,000 A has 80,000 GPU·s (above LAS's
    # 10 GPU-hour level) and B (8 GPUs, 100 s) arrives at level 0: A is preempted with
    # the normal class's 120 s grace, so it stops at 10,120 having saved 5 checkpoints
    # (9,000 s of its 10,120 s of work). B runs 10,120 → 10,220. A restarts at 10,220,
    # reloads for 60 s and does its remaining 91,000 s: it ends at 101,280.
    r = run(trace((0, 100_000, 8, "a"), (10_000, 100, 8, "b")), policy="las",
            checkpoint_interval=1800.0, restart_overhead=60.0)
    assert r.preemptions == 1
    assert r.end[1] == 10_220.0
    assert r.end[0] == 101_280.0
    assert r.lost_gpu_seconds == pytest.approx((10_120 - 9_000) * 8)


@pytest.mark.parametrize("runtime,end,killed,work", [
    # Its second run starts at 4,220 and may last 15,000 s: killed at 19,220, having
    # done 3,600 s saved + 14,940 s after its 60 s reload.
    (20_000, 19_220.0, 1, 18_540.0),
    # 12,400 s still to do after the restart fit in the second run: not killed, though
    # its two runs together outlast the limit.
    (16_000, 16_680.0, 0, 16_000.0),
])
def test_a_requested_limit_applies_afresh_to_each_run(
    runtime: int, end: float, killed: int, work: float,
) -> None:
    # A (limit 15,000 s) is stopped by B at 4,000 (grace 120 s) having saved 3,600 s;
    # B runs 4,120 → 4,220. The scheduler is told each run ends by start + limit, and
    # the engine ends it there too (docs/twin.md, "Time limits").
    r = run(trace((0, runtime, 8, "a", 15_000), (4_000, 100, 8, "a", 200)), policy="las")
    assert r.preemptions == 1 and r.end[0] == end
    assert r.killed_at_limit == killed and r.work[0] == work
    s = summarize(r)
    assert s["bounds"]["hold"] and s["jobs"]["killed_at_limit"] == killed


def test_gpu_hours_lost_are_the_stopped_runs_held_and_not_saved() -> None:
    # docs/twin.md, "Metrics": A's first run held 0 → 4,120 and saved 3,600 s, so 520 s
    # × 8 GPUs are lost (the reload it would have had is part of a stopped run's loss).
    # The reload of A's second run, which completed, is no loss: busy − useful counts
    # it beside the loss.
    r = run(trace((0, 20_000, 8, "a"), (4_000, 100, 8, "b")), policy="las")
    assert r.lost_gpu_seconds == pytest.approx(520 * 8)
    s = summarize(r)
    span_cap = 8 * s["makespan"]
    held_not_useful = (s["busy_utilisation"] - s["utilisation"]) * span_cap
    assert held_not_useful == pytest.approx(r.lost_gpu_seconds + 60 * 8)


def test_each_job_counts_its_preemptions() -> None:
    # As above, and a third job at 50,000 stops A again: A was preempted twice.
    r = run(trace((0, 100_000, 8, "a"), (10_000, 100, 8, "b"), (50_000, 100, 8, "c")),
            policy="las", checkpoint_interval=1800.0, restart_overhead=60.0)
    assert list(r.requeues) == [2, 0, 0] and r.preemptions == 2
    s = summarize(r)
    assert (s["jobs_preempted"], s["most_preemptions_of_a_job"]) == (1, 2)


def test_no_checkpoints_means_a_preempted_job_restarts_from_zero() -> None:
    r = run(trace((0, 100_000, 8, "a"), (10_000, 100, 8, "b")), policy="las",
            checkpoint_interval=None, restart_overhead=0.0)
    assert r.preemptions == 1
    assert r.end[0] == 10_220.0 + 100_000.0
    assert r.lost_gpu_seconds == pytest.approx(10_120 * 8)


def test_only_oracle_policies_get_the_oracle() -> None:
    t = trace((0, 100, 8, "a"), (10, 50, 8, "b"))
    assert replay(t, policy="srtf-oracle").oracle_on
    assert not replay(t, policy="fifo").oracle_on
    assert not replay(t, policy="las").oracle_on
    assert not replay(t, policy="masnaa").oracle_on


def test_oracle_reports_true_remaining_time() -> None:
    from masnaa.domain import Cluster
    from masnaa.sim.engine import PENDING, RUNNING, Engine
    from masnaa.sim.records import EngineConfig
    from masnaa.sim.shape import tenancy

    t = trace((0, 100, 8, "a"), (10, 50, 8, "b"))
    cluster = Cluster.uniform(1)
    tenants, quotas = tenancy(t, cluster)
    e = Engine(t, cluster, tenants, quotas, EngineConfig(policy="srtf-oracle"))
    e.status[0] = RUNNING
    e.end_at[0] = 100.0
    e.now = 30.0
    e.status[1] = PENDING
    assert e.oracle["0"] == 70.0 and e.oracle["1"] == 50.0
    with pytest.raises(KeyError):
        _ = e.oracle["7"]


def test_a_split_gang_is_an_invariant_violation() -> None:
    e = replay(trace((0, 100, 2, "a")), policy="fifo", nodes=2)
    from masnaa.domain import Job

    job = Job("9", "a", "a", tasks=1, gpus_per_task=4, gpu_types=("h100-sxm-80gb",),
              time_limit=10.0)
    node0, node1 = (n.name for n in e.cluster.nodes)
    split = Placement((PlacementSlice(node0, (0, 1)), PlacementSlice(node1, (0, 1))))
    with pytest.raises(InvariantViolation) as err:
        e.holdings.hold(job, split, "h100-sxm-80gb")
    assert err.value.code == "split-task"
    e.holdings.used[0] = 6
    whole = Placement((PlacementSlice(node0, (0, 1, 2, 3)),))
    with pytest.raises(InvariantViolation) as err:
        e.holdings.hold(job, whole, "h100-sxm-80gb")
    assert err.value.code == "over-capacity"


def test_a_gpu_held_twice_is_an_invariant_violation_even_when_counts_fit() -> None:
    e = replay(trace((0, 100, 2, "a")), policy="fifo", nodes=1)
    from masnaa.domain import Job

    def two(job_id: str) -> Job:
        return Job(job_id, "a", "a", tasks=1, gpus_per_task=2, gpu_types=("h100-sxm-80gb",),
                   time_limit=10.0)

    node0 = e.cluster.nodes[0].name
    e.holdings.hold(two("8"), Placement((PlacementSlice(node0, (0, 1)),)), "h100-sxm-80gb")
    with pytest.raises(InvariantViolation) as err:  # 4 of 8 GPUs by count, GPU 1 twice
        e.holdings.hold(two("9"), Placement((PlacementSlice(node0, (1, 2)),)), "h100-sxm-80gb")
    assert err.value.code == "gpu-held-twice"
    with pytest.raises(InvariantViolation) as err:
        e.holdings.release(Placement((PlacementSlice(node0, (2, 3)),)))
    assert err.value.code == "release-not-held"


def test_invariants_were_checked_on_every_start() -> None:
    r = run(trace(*[(k, 10 + k, 1 + k % 8, "ab"[k % 2]) for k in range(40)]), nodes=2,
            policy="masnaa")
    assert r.invariant_checks >= 40
    assert all(not math.isnan(r.end[i]) for i in range(40))


def test_limit_estimator_uses_only_completed_jobs_of_the_tenant() -> None:
    est = LimitEstimator(percentile=0.9, min_samples=20, default=1000.0)
    assert est.estimate("a") == 1000.0
    for k in range(19):
        est.completed("a", 100.0 + k)
    assert est.estimate("a") == 1000.0  # too few samples anywhere
    est.completed("b", 5000.0)
    # 20 jobs over all tenants: their p90 (upper edge of its log bin, ≥ 118 s).
    assert 118.0 <= est.estimate("a") < 130.0
    for _ in range(30):
        est.completed("c", 50_000.0)
    assert 50_000.0 <= est.estimate("c") < 56_500.0
    assert est.estimate("a") > 118.0  # a still falls back to everyone's completions


def test_pass_interval_defers_starts_to_the_next_tick() -> None:
    # Passes at most every 30 s: B arrives at 10 but waits for the tick at 30.
    r = run(trace((0, 100, 4, "a"), (10, 50, 4, "b")), policy="fifo", min_pass_interval=30.0)
    assert [r.end[0], r.end[1]] == [100.0, 80.0]
    assert r.passes == 2


def test_a_tick_is_kept_when_the_clock_rounds_short_of_the_interval() -> None:
    # A pass at 2024.14200743677 sets the next tick at that + 60 = 2084.1420074367697,
    # from which 2024.14200743677 is 59.99999999999977 away: pacing by the difference
    # found the tick too early and set it again at the same instant, for ever.
    a = 2024.14200743677
    assert (a + 60.0) - a < 60.0
    with deadline(30):
        r = run(trace((0, 10_000, 8, "a"), (a, 60, 8, "a"), (2030.0, 60, 8, "a")),
                policy="fifo", min_pass_interval=60.0)
    assert list(r.end) == [10_000.0, 10_060.0, 10_120.0]


def test_las_without_checkpoints_still_finishes_every_job() -> None:
    # Three 10-hour jobs on one node, no checkpoints, a 6-hour starvation limit: each
    # promoted job stopped the one running, which lost its whole run, and they took
    # turns for ever. Promoted jobs now spare a job stopped before that cannot
    # checkpoint.
    with deadline(30):
        r = run(trace((0, 36_000, 8, "a"), (60, 36_000, 8, "b"), (120, 36_000, 8, "c")),
                policy="las", checkpoint_interval=None)
    # Every job ends, after four stops in all (by jobs of a lower service level, or
    # promoted ones), its last run a whole 10 hours.
    assert list(r.end) == [117_990.0, 45_870.0, 81_930.0]
    assert list(r.requeues) == [2, 1, 1]


def test_a_job_that_loses_every_run_is_given_up_and_counted() -> None:
    # Two 40-hour jobs on one node, checkpoints every 25,000 s, a 6-hour starvation
    # limit: each waits 6 hours, is promoted and stops the other before it saves a
    # checkpoint, and neither saves anything, ever. After RUNS_LOST_LIMIT runs in a row
    # that saved nothing the engine gives job a up (stranded, lost-every-run); b then
    # runs to its end.
    with deadline(30):
        r = run(trace((0, 144_000, 8, "a"), (60, 144_000, 8, "b")),
                policy="las", checkpoint_interval=25_000.0)
    assert list(r.status) == [STRANDED, DONE]
    assert r.stranded == {"lost-every-run": 1}
    assert list(r.requeues) == [RUNS_LOST_LIMIT, RUNS_LOST_LIMIT - 1]
    assert r.end[1] == 43_524_090.0


class _Passes(Engine):
    """An engine that notes the virtual time of each pass."""

    pass_times: list[float]

    def _pass(self, t: float) -> None:
        self.pass_times = getattr(self, "pass_times", [])
        self.pass_times.append(t)
        super()._pass(t)


def test_las_preempts_when_the_long_job_climbs_a_level_though_nothing_happens_then() -> None:
    # A (8 GPUs, asked for 200,000 s, so no estimate event) reaches the 1 GPU-hour level
    # at 450 s; B (8 GPUs, 100 s) has waited since 100. The service, passing every
    # half second, stops A at 450: A leaves at 450 + 120 s of grace, B runs 570 → 670.
    # A restarts at 670 with no checkpoint saved, reloads for 60 s: it ends at 100,730.
    r = run(trace((0, 100_000, 8, "a", 200_000), (100, 100, 8, "b", 200)), policy="las")
    assert (r.end[1], r.end[0]) == (670.0, 100_730.0)
    assert r.preemptions == 1


def test_masnaa_reclaims_when_the_wait_reaches_reclaim_after_though_nothing_happens_then() -> None:
    # a holds both halves of the node (4 GPUs borrowed from b) with requested limits;
    # b's job arrives at 100 and may reclaim from 100 + 2 h: one of a's jobs stops with
    # 120 s of grace and b's job runs 7,420 → 7,520. b's second job makes its entitled
    # share half the node.
    rows = ((0, 50_000, 4, "a", 60_000), (0, 50_000, 4, "a", 60_000),
            (100, 100, 4, "b", 200), (300_000, 100_000, 4, "b", 200_000))
    r = run(trace(*rows), policy="masnaa")
    assert r.end[2] == 100 + 7_200 + 120 + 100
    assert r.preemptions == 1


def test_a_pass_follows_only_batches_where_something_happened() -> None:
    # The las case above, and C (8 GPUs, 5,000 s) at 99,000, which stops A again: A's
    # second run (670 → 99,120) saved 54 checkpoints, 97,200 s of its work. Passes: A
    # and B arrive, A's review at 450, the grace end, B's end, C arrives, the second
    # grace end, C's end at 104,120. A's two ENDs of runs already stopped (100,000 and
    # 100,730) come due while A waits, and bring no pass: nothing happened then.
    rows = ((0, 100_000, 8, "a", 200_000), (100, 100, 8, "b", 200),
            (99_000, 5_000, 8, "c", 10_000))
    t = trace(*rows)
    cluster = Cluster.uniform(1)
    tenants, quotas = tenancy(t, cluster)
    e = _Passes(t, cluster, tenants, quotas, EngineConfig(policy="las"))
    r = e.run()
    assert e.pass_times == [0.0, 100.0, 450.0, 570.0, 670.0, 99_000.0, 99_120.0, 104_120.0]
    assert r.end[0] == 104_120 + 60 + 2_800


class _StaleTail(Engine):
    """An engine whose every start also leaves an event of no run, due long after."""

    def _start(self, job_id: str, placement: object, gpu_type: str, site: str, t: float) -> None:
        super()._start(job_id, placement, gpu_type, site, t)
        heapq.heappush(self.heap, (t + 1e6, END, int(job_id), -1))


def test_jobs_still_waiting_when_only_stale_events_remain_are_stranded() -> None:
    # x may hold no GPU at all (nominal 0, no borrowing): its job can never start. The
    # last event is stale, so no pass follows it; the job is stranded all the same.
    # (No starvation limit: its review would bring one more pass, and hide the case.)
    t = trace((0, 100, 8, "a"), (0, 100, 1, "x"))
    cluster = Cluster.uniform(1)
    tenants, quotas = tenancy(t, cluster)
    quotas = tuple(
        dataclasses.replace(q, nominal=0, borrowing_limit=0) if q.tenant == "x" else q
        for q in quotas
    )
    cfg = EngineConfig(policy="masnaa", knobs=(("tenant_starvation_limit", 0.0),))
    e = _StaleTail(t, cluster, tenants, quotas, cfg)
    r = e.run()
    assert r.status[0] == DONE and r.status[1] == STRANDED
    assert sum(r.stranded.values()) == 1
