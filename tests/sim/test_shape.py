"""Cluster sizing, load factor, entitlement, and replays on multi-site, multi-type clusters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from twin_builders import trace

from masnaa.domain import Cluster
from masnaa.sim.compare import compare
from masnaa.sim.engine import DONE, Engine
from masnaa.sim.errors import SimError
from masnaa.sim.loaders import TraceSource, load_trace
from masnaa.sim.records import EngineConfig
from masnaa.sim.shape import (
    Sizing,
    apportion,
    build_cluster,
    entitlement,
    load_factor,
    served,
    size_for,
    tenancy,
)
from masnaa.sim.trace import Trace, TraceBuilder


def test_load_factor_and_sizing() -> None:
    # 3 jobs over a span of 1,000 s offering 8·1000 + 8·500 + 4·1000 = 16,000 GPU·s.
    t = trace((0, 1000, 8, "a"), (500, 500, 8, "b"), (1000, 1000, 4, "a"))
    assert load_factor(t, 16) == pytest.approx(1.0)
    s = size_for(t, load=0.5)
    assert s.nodes == 4 and s.gpus == 32 and load_factor(t, s.gpus) == pytest.approx(0.5)
    assert size_for(t, gpus=20).gpus == 24  # whole nodes
    with pytest.raises(SimError):
        size_for(t, load=0.5, gpus=8)
    with pytest.raises(SimError):
        size_for(t, load=0)


def test_peak_demand_counts_jobs_running_at_once_from_their_submission() -> None:
    # a: [0, 1000) 8 GPUs; b: [500, 1000) 8; c: [1000, 2000) 4, starting as a and b end;
    # d: [600, 700) 2, cut at its limit of 100 s.
    t = trace((0, 1000, 8, "a"), (500, 500, 8, "b"), (1000, 1000, 4, "a"),
              (600, 5000, 2, "b", 100))
    assert t.peak_demand() == 18
    # A slice whose work runs on long after its last submission: sized for a load over
    # its span, the cluster is larger than the trace ever asks for at once.
    tail = trace((0, 100_000, 8, "a"), (100, 60, 1, "b"), (200, 60, 1, "b"))
    assert tail.peak_demand() == 9 and size_for(tail, load=0.9).gpus > 9


def test_entitlement_is_proportional_to_offered_work() -> None:
    t = trace((0, 1000, 8, "a"), (500, 500, 8, "b"), (1000, 1000, 4, "a"))
    shares = entitlement(t)
    assert shares == pytest.approx({"a": 0.75, "b": 0.25})
    cluster = build_cluster(t, 4)
    tenants, quotas = tenancy(t, cluster)
    assert {q.tenant: q.nominal for q in quotas} == {"a": 24, "b": 8}
    assert all(q.borrowing_limit is None for q in quotas)
    assert math.isclose(sum(x.share for x in tenants), 1.0)


def test_replay_respects_sites_and_gpu_types(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text(
        "submit_time,runtime,gpus,tenant,gpu_type,sites\n"
        "0,100,8,a,h100,north\n"
        "1,100,8,a,h100,south\n"
        "2,100,4,b,l40s,south\n"
        "3,100,4,b,l40s,\n"
        "4,100,2,b,h100,north;south\n"
    )
    t = load_trace("csv", TraceSource(path=p))
    cluster = build_cluster(t, 8)
    assert {s.name for s in cluster.sites} == {"north", "south"}
    assert {n.gpu_type for n in cluster.nodes} == {"h100", "l40s"}
    tenants, quotas = tenancy(t, cluster)
    e = Engine(t, cluster, tenants, quotas, EngineConfig(policy="masnaa"))
    r = e.run()
    assert all(r.status[i] == DONE for i in range(len(t)))
    # The engine checked every placement against the job's sites and GPU type.
    assert r.invariant_checks == len(t)


@pytest.mark.parametrize(
    ("nodes", "weights", "parts"),
    [
        (4, [0.94, 0.06], [3, 1]),  # the small type keeps its one node, the total holds
        (10, [0.55, 0.45], [5, 5]),  # 1 + 1 each, then 8 split 4.4 / 3.6: the .6 wins
        (10, [0.5, 0.3, 0.2], [5, 3, 2]),
        (7, [1.0], [7]),
        (1, [0.5, 0.5], [1, 1]),  # fewer nodes than types: one each, larger than asked
    ],
)
def test_nodes_are_apportioned_over_gpu_types(
    nodes: int, weights: list[float], parts: list[int]
) -> None:
    assert apportion(nodes, weights) == parts


def test_a_cluster_of_several_gpu_types_has_the_size_asked(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text(
        "submit_time,runtime,gpus,tenant,gpu_type\n"
        "0,7200,8,a,h100\n"
        "60,3600,8,b,h100\n"
        "120,1800,1,b,l40s\n"
    )
    t = load_trace("csv", TraceSource(path=p))
    for nodes in (2, 3, 4, 9):
        cluster = build_cluster(t, nodes)
        assert len(cluster.nodes) == nodes
        assert {n.gpu_type for n in cluster.nodes} == {"h100", "l40s"}
    # Asked for one node, it gets one per type; the report's size and load factor are
    # those of the cluster replayed.
    doc = compare(t, ["fifo"], size_for(t, gpus=8), EngineConfig())
    assert doc["cluster"]["gpus"] == 16
    assert doc["cluster"]["load_factor"] == pytest.approx(load_factor(t, 16))


def test_a_cluster_sized_for_a_load_holds_the_largest_job() -> None:
    # Little work over a long span: the load asks for one node, the 64-GPU job for 8.
    t = trace((0, 600, 64, "a"), (86_400, 60, 1, "b"))
    assert round(t.offered_gpu_seconds() / (0.9 * t.span * 8)) <= 1
    sized = size_for(t, load=0.9)
    assert sized.nodes == 8 and sized.gpus == 64
    assert load_factor(t, sized.gpus) < 0.9
    assert size_for(t, gpus=16).gpus == 16  # a size given is the size replayed


@pytest.mark.parametrize(
    ("rows", "column"),
    [
        # A rare GPU type's 32-GPU job: split by work, a100 would get one node.
        (["0,60,32,a,a100", "0,36000,8,b,h100", "86400,36000,8,b,h100"], "gpu_type"),
        # A 32-GPU job that may run only at s1, of four sites sharing the nodes evenly.
        (["0,600,32,a,s1", "100,3600,1,b,s2", "200,3600,1,b,s3", "864000,3600,1,b,s4"],
         "sites"),
    ],
)
def test_no_job_is_rejected_for_how_the_nodes_were_split(
    tmp_path: Path, rows: list[str], column: str
) -> None:
    p = tmp_path / "t.csv"
    p.write_text(f"submit_time,runtime,gpus,tenant,{column}\n" + "\n".join(rows) + "\n")
    t = load_trace("csv", TraceSource(path=p))
    sized = size_for(t, load=0.9)
    assert sized.gpus == 32  # the whole cluster asked for holds the largest job
    doc = compare(t, ["fifo-backfill"], sized, EngineConfig())
    run = doc["policies"][0]
    assert run["jobs"]["rejected"] == {} and run["jobs"]["finished"] == len(rows)
    assert doc["cluster"]["gpus"] > 32  # grown where the split fell short, and said so
    # A job larger than the cluster asked for is still rejected, pools or not: no pool
    # of a 2-node cluster grows to the 32-GPU job's 4 nodes.
    pools: dict[tuple[str, str], int] = {}
    for node in build_cluster(t, 2).nodes:
        pools[node.site, node.gpu_type] = pools.get((node.site, node.gpu_type), 0) + 1
    assert max(pools.values()) < 4


def _alternating(big: bool) -> Trace:
    b = TraceBuilder("rej")
    if big:  # one job no cluster of 32 GPUs can hold
        b.add(submit=0, runtime=360_000, gpus=64, tenant="b", job_id="big")
    for k in range(24):
        b.add(submit=300 * k, runtime=3600, gpus=8, tenant="ab"[k % 2], job_id=f"j{k}")
    return b.build()


def test_a_job_too_large_for_the_cluster_defines_no_share_quota_or_load() -> None:
    # The audit's rej_with.csv, small: the rejected 64-GPU job of b must not raise b's
    # share (and masnaa quota), the load factor or the peak demand, nor change how the
    # other jobs are replayed; it is rejected and counted.
    docs = [compare(_alternating(big), ["masnaa", "fifo-backfill"], Sizing(4, 32),
                    EngineConfig()) for big in (False, True)]
    without, with_big = docs
    assert with_big["trace"]["too_large_jobs"] == 1 and without["trace"]["too_large_jobs"] == 0
    for key in ("offered_gpu_hours", "peak_demand_gpus"):
        assert with_big["trace"][key] == without["trace"][key]
    assert with_big["cluster"]["load_factor"] == without["cluster"]["load_factor"]
    for p, q in zip(without["policies"], with_big["policies"], strict=True):
        assert q["jobs"]["rejected"] == {"too-large": 1} and p["jobs"]["rejected"] == {}
        assert q["jct"] == p["jct"] and q["fairness"]["jain"] == p["fairness"]["jain"]
        shares = {t["tenant"]: t["entitled_share"] for t in q["fairness"]["tenants"]}
        assert shares == {"a": 0.5, "b": 0.5}
        assert [t["fair_ratio"] for t in q["fairness"]["tenants"]] == [
            t["fair_ratio"] for t in p["fairness"]["tenants"]]


def test_served_keeps_the_jobs_the_cluster_can_hold() -> None:
    t = _alternating(True)
    assert served(t, Cluster.uniform(8)) is t
    small = served(t, Cluster.uniform(4))
    assert len(small) == 24 and "big" not in small.ids
    _, quotas = tenancy(t, Cluster.uniform(4))
    assert {q.tenant: q.nominal for q in quotas} == {"a": 16, "b": 16}
