"""Metrics: Jain's index, water-filling, bounds and fair-share accounting."""

from __future__ import annotations

import random

import numpy as np
import pytest
from rich.console import Console
from twin_builders import run, trace

from masnaa.sim.metrics import jain, summarize
from masnaa.sim.recorded import recorded
from masnaa.sim.report import percent, range_cell, table, tenant_table
from masnaa.sim.timeline import Timeline, waterfill
from masnaa.sim.trace import TraceBuilder


@pytest.mark.parametrize(
    ("values", "expected"),
    [([1, 1, 1, 1], 1.0), ([1, 0, 0, 0], 0.25), ([2, 2], 1.0), ([1, 3], 16 / 20), ([], None)],
)
def test_jain(values: list[float], expected: float | None) -> None:
    # No tenant to measure is no index, not a perfect one.
    assert jain(values) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("demand", "weights", "capacity", "fair"),
    [
        ([10, 1, 100], [1, 1, 1], 30, [10, 1, 19]),   # leftovers flow to the hungry one
        ([5, 5], [1, 1], 100, [5, 5]),                # enough for all: demand
        ([100, 100], [2, 1], 30, [20, 10]),           # split by weight
        ([0, 100, 100], [5, 1, 1], 30, [0, 15, 15]),  # no demand, no entitlement
        ([4, 100, 100], [1, 1, 2], 40, [4, 12, 24]),
    ],
)
def test_waterfill(demand: list[int], weights: list[float], capacity: int,
                   fair: list[float]) -> None:
    got = waterfill(np.asarray([demand], dtype=float), np.asarray(weights, dtype=float), capacity)
    assert got[0].tolist() == pytest.approx(fair)


def test_timeline_fair_share_integrals() -> None:
    # 8 GPUs, tenants a and b with equal shares. For 100 s only a wants GPUs (8 held);
    # then for 100 s both want 8 and each holds 4.
    tl = Timeline([0.5, 0.5], capacity=8, bin_width=50)
    tl.advance(0, 100, [8, 0], [8, 0])
    tl.advance(100, 200, [4, 4], [8, 8])
    r = tl.finish()
    assert r.received.tolist() == [1200.0, 400.0]
    assert r.entitled.tolist() == [800 + 400, 400.0]
    assert r.fair.tolist() == [1200.0, 400.0]
    assert r.busy.tolist() == [400, 400, 400, 400]
    assert r.demand_seconds.tolist() == [200, 100]


def test_timeline_coarsens_when_the_run_outgrows_its_bins() -> None:
    tl = Timeline([1.0], capacity=8, bin_width=10, max_bins=8)
    tl.advance(0, 1000, [8], [8])
    r = tl.finish()
    assert r.bin_width >= 125 and r.busy.shape[0] <= 9
    assert r.busy.sum() == pytest.approx(8000)


def test_a_full_factory_fills_every_bin_exactly() -> None:
    # A width that is no round number (a trace's span over the bin count), events at
    # random instants, and four doublings of the width on the way: an interval cut at
    # a bin edge must land in the bin after it, or the series shows 95 % and 105 %
    # busy by turns for a factory that is full all along.
    rng = random.Random(1)
    tl = Timeline([1.0, 2.0], capacity=10, bin_width=861.34, max_bins=64)
    t = 0.0
    while t < 500_000:
        dt = rng.expovariate(1 / 300)
        tl.advance(t, t + dt, [4, 6], [8, 8])
        t += dt
    r = tl.finish()
    full = int(t // r.bin_width)
    assert full >= 30
    assert r.busy[:full] == pytest.approx(np.full(full, 10 * r.bin_width), rel=1e-12)
    assert r.tenant_gpu_seconds[:full, 1] == pytest.approx(np.full(full, 6 * r.bin_width))
    assert r.busy.sum() == pytest.approx(10 * t)


@pytest.mark.parametrize(
    ("lo", "mean", "hi", "fmt", "cell"),
    [
        (27_828.0, 28_764.0, 30_060.0, None, "7.99 h (7.73 – 8.35 h)"),  # the unit once
        (3_000.0, 4_000.0, 7_200.0, None, "1.11 h (50.0 min – 2.00 h)"),  # units differ
        (0.78, 0.79, 0.8, percent, "79.0 % (78.0 – 80.0 %)"),
        (83.0, 102.0, 123.0, lambda x: f"{x:,.0f}", "102 (83 – 123)"),  # no unit
    ],
)
def test_a_range_cell_names_its_unit_once_where_both_ends_share_it(
    lo: float, mean: float, hi: float, fmt: object, cell: str
) -> None:
    m = {"min": lo, "mean": mean, "max": hi}
    assert (range_cell(m) if fmt is None else range_cell(m, fmt)) == cell
    assert range_cell({"min": None, "mean": None, "max": None}) == "—"


def test_summary_on_a_small_replay_is_consistent() -> None:
    t = trace((0, 100, 8, "a"), (10, 50, 8, "b"), (20, 10, 16, "a"))
    s = summarize(run(t, policy="fifo"))
    assert s["jobs"]["finished"] == 2 and s["jobs"]["rejected"] == {"too-large": 1}
    assert s["jct"]["mean"] == pytest.approx((100 + 140) / 2)
    assert s["queueing_delay"]["mean"] == pytest.approx((0 + 90) / 2)
    assert s["makespan"] == 150.0
    assert s["utilisation"] == pytest.approx((100 * 8 + 50 * 8) / (8 * 150))
    assert s["bounds"]["hold"] and s["bounds"]["makespan_lower"] == pytest.approx(150.0)
    assert s["label"] == "fifo" and not s["oracle"]


def test_each_tenant_has_its_own_job_figures() -> None:
    # FIFO on 8 GPUs: a's 8-GPU job runs at once, b's waits 90 s behind it, and a's
    # 16-GPU job is rejected, so it counts in no one's figures.
    s = summarize(run(trace((0, 100, 8, "a"), (10, 50, 8, "b"), (20, 10, 16, "a")),
                      policy="fifo"))
    by = {t["tenant"]: t for t in s["fairness"]["tenants"]}
    assert by["a"]["jobs"] == 1 and by["b"]["jobs"] == 1
    assert by["a"]["jct"]["mean"] == pytest.approx(100.0)
    assert by["a"]["queueing_delay"]["max"] == pytest.approx(0.0)
    assert by["b"]["jct"]["mean"] == pytest.approx(140.0)
    assert by["b"]["queueing_delay"]["mean"] == pytest.approx(90.0)
    # The policy's mean is the tenants' means weighted by their jobs.
    total = sum(t["jct"]["mean"] * t["jobs"] for t in by.values())
    assert total / s["jobs"]["finished"] == pytest.approx(s["jct"]["mean"])


def test_tenant_table_shows_where_a_mean_comes_from() -> None:
    t = trace((0, 100, 8, "a"), (10, 50, 8, "b"), (20, 30, 8, "b"))
    fifo = summarize(run(t, policy="fifo"))
    doc = {"policies": [fifo, summarize(run(t, policy="srtf-oracle"))]}
    console = Console(width=200, record=True)
    console.print(tenant_table(doc))
    text = console.export_text()
    header = next([c.strip() for c in line.split("┃")[1:-1]] for line in text.splitlines()
                  if line.count("┃") >= 4)
    body = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines()
            if line.count("│") >= 4]
    assert header == ["tenant", "jobs", "fifo", "srtf-oracle (oracle)"]
    assert [r[0] for r in body] == ["b", "a", "all"]  # most jobs first, then the whole
    by = {x["tenant"]: x for x in fifo["fairness"]["tenants"]}
    # b's two jobs under fifo: 140 s and 160 s (behind a's, then behind b's own).
    assert by["b"]["jct"]["mean"] == pytest.approx(150.0)
    assert body[0][1] == "2" and body[0][2].startswith("2.5 min (")
    assert body[0][2].endswith(f"({100 * by['b']['fair_ratio']:.1f} %)")
    assert body[2][2] == "2.2 min"  # (100 + 140 + 160) / 3 s


def test_oracle_is_labelled() -> None:
    s = summarize(run(trace((0, 100, 8, "a"), (10, 50, 8, "b")), policy="srtf-oracle"))
    assert s["oracle"] and s["label"] == "srtf-oracle (oracle)"


def test_jain_counts_only_the_tenants_served_below_their_fair_split() -> None:
    # FIFO on 8 GPUs: a holds them all while b waits, so a is over-served and b under.
    s = summarize(run(trace((0, 100, 8, "a"), (10, 50, 8, "b")), policy="fifo"))
    ratios = [t["fair_ratio"] for t in s["fairness"]["tenants"] if t["fair_ratio"] is not None]
    assert max(ratios) > 1 > min(ratios)
    assert s["fairness"]["jain"] == pytest.approx(jain([min(1.0, r) for r in ratios]))
    assert s["fairness"]["jain_uncapped"] == pytest.approx(jain(ratios))
    assert s["fairness"]["jain_uncapped"] < s["fairness"]["jain"] < 1


def test_recorded_schedule_is_measured_like_a_replay() -> None:
    b = TraceBuilder("history")
    b.add(submit=0.0, runtime=100.0, gpus=2, tenant="a", started=10.0)
    b.add(submit=5.0, runtime=50.0, gpus=1, tenant="b", started=5.0)
    b.add(submit=20.0, runtime=30.0, gpus=1, tenant="b")  # start not recorded
    doc = recorded(b.build(), gpus=4)
    assert doc is not None
    assert doc["jobs"] == {"total": 3, "finished": 2}
    assert doc["jct"]["mean"] == pytest.approx((110 + 50) / 2)
    assert doc["queueing_delay"]["mean"] == pytest.approx(5.0)
    assert doc["queueing_delay"]["max"] == pytest.approx(10.0)
    # Per tenant, only jobs whose start is known: b's second job counts for no one.
    assert [(t["tenant"], t["jobs"], t["jct"]["mean"]) for t in doc["tenants"]] == [
        ("a", 1, pytest.approx(110.0)), ("b", 1, pytest.approx(50.0))
    ]
    assert doc["makespan"] == pytest.approx(110.0)
    assert doc["utilisation"] == pytest.approx((100 * 2 + 50) / (4 * 110))
    cdf = doc["series"]["jct_quantiles"]
    assert cdf[0] == pytest.approx(50.0) and cdf[-1] == pytest.approx(110.0)
    # A trace that records no start has nothing to report.
    b = TraceBuilder("plain")
    b.add(submit=0.0, runtime=1.0, gpus=1, tenant="a")
    assert recorded(b.build(), gpus=4) is None


def test_table_sets_the_recorded_schedule_beside_the_replays() -> None:
    r = run(trace((0, 100, 2, "a"), (5, 50, 1, "b")), policy="fifo")
    history = {"label": "as recorded", "jobs": {"total": 2, "finished": 2},
               "jct": {"mean": 3600.0, "median": 3600.0, "p99": 3600.0, "max": 3600.0},
               "queueing_delay": {"mean": 60.0, "median": 60.0, "p99": 60.0, "max": 60.0},
               "makespan": 7200.0, "utilisation": 0.5}
    doc = {"trace": {"name": "h", "jobs": 2, "span_days": 0.0},
           "cluster": {"gpus": 8, "nodes": 1, "load_factor": 0.1},
           "policies": [summarize(r)], "recorded": history}
    console = Console(width=200, record=True)
    console.print(table(doc))
    text = console.export_text()
    lines = {line.split("│")[1].strip(): line for line in text.splitlines()
             if line.count("│") >= 3}
    assert "as recorded" in text
    assert lines["JCT mean"].rstrip(" │").endswith("1.00 h")
    assert lines["utilisation (work)"].rstrip(" │").endswith("50.0 %")
    # Fairness and preemption are not in a history: shown as unknown, not as zero.
    assert lines["Jain's index"].rstrip(" │").endswith("—")
    assert lines["preemptions"].rstrip(" │").endswith("—")


def test_the_series_end_with_the_last_job() -> None:
    # b's 1-GPU job waits behind a's 8-GPU job, within b's quota while a borrows: the
    # pass asks to be looked at again when b may reclaim (2 h on). Both jobs are over
    # long before then, and the replay must not follow that stale review with idle bins.
    s = summarize(run(trace((0, 1000, 8, "a"), (10, 100, 1, "b")), policy="masnaa"))
    assert s["makespan"] == 1100.0
    bins = len(s["series"]["utilisation"])
    assert bins * s["series"]["bin_seconds"] < s["makespan"] + s["series"]["bin_seconds"]


def test_the_series_end_with_the_last_job_even_when_a_rejected_one_arrives_later() -> None:
    # The 16-GPU job cannot run on one 8-GPU node; it arrives at 3 s, two seconds after
    # the only job that ran ended. The clock went there; the series must not.
    s = summarize(run(trace((0, 1, 1, "a"), (3, 1, 16, "a")), nodes=1, policy="fifo"))
    assert s["makespan"] == 1.0
    assert len(s["series"]["utilisation"]) * s["series"]["bin_seconds"] <= 1.0
