"""Place: best fit on one node, gangs in the smallest topology domain, exact GPUs."""

from __future__ import annotations

import pytest

from masnaa.domain import Cluster
from masnaa.scheduler import WaitCode

from .builders import GPU, Scene, job, mixed_types, nodes_of, on, started, with_sites


def test_a_job_that_fits_one_node_takes_the_tightest_node() -> None:
    # n0000 has 6 free, n0001 has 3 free, n0002 is empty: a 3-GPU job fills n0001 exactly.
    s = Scene(nodes=3)
    s.running(job("r0").gpus(2), on("n0000", 0, 1))
    s.running(job("r1").gpus(5), on("n0001", 0, 1, 2, 3, 4))
    s.pending(job("a").gpus(3))
    d = s.decide("fifo")
    assert d.starts[0].placement.slices == (on("n0001", 5, 6, 7),)
    assert d.starts[0].gpu_type == GPU and d.starts[0].site == "site-1"


@pytest.mark.parametrize(
    ("tasks", "gpt", "expect_nodes"),
    [
        (2, 8, 2),  # two whole nodes
        (4, 4, 2),  # four 4-GPU tasks pack two per node
        (3, 8, 3),
    ],
)
def test_gangs_spread_over_whole_nodes(tasks: int, gpt: int, expect_nodes: int) -> None:
    s = Scene(nodes=4).pending(job("g").gang(tasks, gpt))
    d = s.decide("fifo")
    (start,) = d.starts
    assert start.placement.gpu_count == tasks * gpt
    assert len(start.placement.slices) == expect_nodes
    for sl in start.placement.slices:
        assert len(sl.gpus) % gpt == 0  # a task never spans nodes


def test_gang_takes_the_smallest_leaf_that_holds_it() -> None:
    # Leaves of 4 nodes: leaf0 has 2 free nodes, leaf1 has 4 free nodes.
    s = Scene(nodes=8, nodes_per_leaf=4)
    s.running(job("x").gang(2, 8), "n0000", "n0001")
    s.pending(job("g").gang(2, 8))
    assert set(nodes_of(s.decide("fifo"), "g")) == {"n0002", "n0003"}
    s2 = Scene(nodes=8, nodes_per_leaf=4)
    s2.running(job("x").gang(3, 8), "n0000", "n0001", "n0002")
    s2.pending(job("g").gang(2, 8))
    # leaf0 has only one free node now: the gang goes to leaf1 rather than straddling.
    assert set(nodes_of(s2.decide("fifo"), "g")) <= {"n0004", "n0005", "n0006", "n0007"}


def test_tasks_never_span_nodes() -> None:
    # 4 free GPUs on each of two nodes: a single 8-GPU task cannot start.
    s = Scene(nodes=2)
    s.running(job("a").gpus(4), on("n0000", 0, 1, 2, 3))
    s.running(job("b").gpus(4), on("n0001", 0, 1, 2, 3))
    s.pending(job("big").gpus(8))
    d = s.decide("fifo")
    assert not d.starts
    assert d.wait_for("big").code is WaitCode.NO_CAPACITY
    # …but two 4-GPU tasks can.
    s.queue.remove("big")
    s.pending(job("pair").gang(2, 4))
    assert started(s.decide("fifo")) == ["pair"]


def test_gpu_type_preference_order_is_honoured() -> None:
    s = Scene(cluster=mixed_types(1, 1))
    s.pending(job("a").gpus(8).types("l40s", GPU), job("b").gpus(8).types("l40s", GPU))
    d = s.decide("fifo")
    assert [(x.job_id, x.gpu_type) for x in d.starts] == [("a", "l40s"), ("b", GPU)]


def test_sites_restrict_placement() -> None:
    s = Scene(cluster=with_sites(("ma-1", 1), ("za-1", 1)))
    s.pending(job("a").gpus(8).sites("za-1"), job("b").gpus(8).sites("za-1"))
    d = s.decide("fifo-backfill")
    assert [(x.job_id, x.site) for x in d.starts] == [("a", "za-1")]
    assert d.wait_for("b").code is WaitCode.RESERVED


def test_a_job_never_spans_sites() -> None:
    s = Scene(cluster=with_sites(("ma-1", 1), ("za-1", 1))).pending(job("g").gang(2, 8))
    d = s.decide("fifo")
    assert d.rejected["g"].code is WaitCode.TOO_LARGE


def test_impossible_jobs_are_rejected_with_a_reason_wherever_they_queue() -> None:
    s = Scene(nodes=2)
    s.running(job("r").gang(2, 8), "n0000", "n0001")
    s.pending(
        job("blocked").gpus(8).submitted(0),
        job("huge").gang(3, 8).submitted(1),
        job("wide").gpus(16).submitted(2),
        job("nowhere").gpus(1).types("b200").submitted(3),
        job("offsite").gpus(1).sites("ke-1").submitted(4),
    )
    d = s.decide("fifo")
    assert d.rejected["huge"].code is WaitCode.TOO_LARGE
    assert d.rejected["wide"].code is WaitCode.TOO_LARGE
    assert d.rejected["nowhere"].code is WaitCode.NO_ELIGIBLE_SITE
    assert d.rejected["offsite"].code is WaitCode.NO_ELIGIBLE_SITE
    assert "8" in d.rejected["wide"].message
    assert d.wait_for("blocked").code is WaitCode.NO_CAPACITY


def test_drained_nodes_explain_the_wait() -> None:
    s = Scene(nodes=2).pending(job("g").gang(2, 8))
    s.state.set_node_available("n0001", False)
    d = s.decide("fifo-backfill")
    assert not d.starts
    assert d.wait_for("g").code is WaitCode.NODES_UNAVAILABLE


def test_uniform_cluster_nvlink_domains_group_nodes() -> None:
    c = Cluster.uniform(4, nodes_per_nvlink=2)
    s = Scene(cluster=c)
    s.running(job("x").gpus(8), "n0000")
    s.pending(job("g").gang(2, 8))
    # n0002+n0003 share an NVLink domain; n0001 alone would straddle two.
    assert set(nodes_of(s.decide("fifo"), "g")) == {"n0002", "n0003"}
