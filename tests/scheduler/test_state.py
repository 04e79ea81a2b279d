"""ClusterState: the driver-owned index never lets a GPU be held twice."""

from __future__ import annotations

import pytest

from masnaa.domain import Placement, RunningJob
from masnaa.scheduler import ClusterState
from masnaa.scheduler.view import View

from .builders import GPU, Scene, job, mixed_types, on, with_sites


def test_allocate_and_release_keep_counts() -> None:
    s = Scene(nodes=2)
    s.running(job("a").gpus(3), on("n0000", 0, 1, 2))
    st = s.state
    assert st.free_gpus("n0000") == 5
    assert st.free_indices("n0000") == (3, 4, 5, 6, 7)
    assert st.free_of_type(GPU) == 13
    assert st.free_in_site("site-1") == 13
    assert st.free_in_domain("site-1/leaf0000") == 13
    assert st.tenant_gpus("t1") == 3
    assert st.tenant_gpus_in("t1", GPU, "site-1") == 3
    released = st.release("a")
    assert released.job.id == "a"
    assert st.free_of_type(GPU) == 16 and st.tenant_gpus("t1") == 0
    assert not st.running


@pytest.mark.parametrize(
    ("placement", "needle"),
    [
        ((on("n0000", 0, 1),), "already held"),
        ((on("nope", 0, 1),), "unknown node"),
        ((on("n0001", 8, 1),), "out of range"),
        ((on("n0001", 1, 1),), "listed twice"),
        ((on("n0001", 1), on("n0001", 2)), "appears twice"),
        ((on("n0001", 1),), "placement holds 1 GPUs"),
    ],
)
def test_allocate_refuses_bad_placements_and_changes_nothing(placement: tuple, needle: str) -> None:
    s = Scene(nodes=2).running(job("held").gpus(1), on("n0000", 0))
    before = s.state.free_of_type(GPU)
    j = job("x").gpus(2).build()
    with pytest.raises(ValueError, match=needle):
        s.state.allocate(RunningJob(j, Placement(placement), GPU, 0.0, 10.0))
    assert s.state.free_of_type(GPU) == before
    assert "x" not in s.state.running


def test_allocate_refuses_same_job_twice_and_wrong_type() -> None:
    s = Scene(nodes=2).running(job("a").gpus(1), on("n0000", 0))
    j = s.state.running["a"].job
    with pytest.raises(ValueError, match="already running"):
        s.state.allocate(RunningJob(j, Placement((on("n0001", 0),)), GPU, 0, 1))
    with pytest.raises(ValueError, match="has h100"):
        s.state.allocate(
            RunningJob(job("b").gpus(1).build(), Placement((on("n0001", 0),)), "l40s", 0, 1)
        )


def test_release_unknown_job_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        ClusterState(Scene().cluster).release("ghost")  # type: ignore[arg-type]


def test_drained_node_takes_nothing_new_but_keeps_its_jobs() -> None:
    s = Scene(nodes=2).running(job("a").gpus(2), on("n0000", 0, 1))
    s.state.set_node_available("n0000", False)
    s.state.set_node_available("n0000", False)  # idempotent
    assert s.state.free_of_type(GPU) == 8  # only n0001 counts
    assert "a" in s.state.running
    with pytest.raises(ValueError, match="unavailable"):
        s.state.allocate(
            RunningJob(job("b").gpus(1).build(), Placement((on("n0000", 5),)), GPU, 0, 1)
        )
    s.state.release("a")
    assert s.state.free_of_type(GPU) == 8
    s.state.set_node_available("n0000", True)
    assert s.state.free_of_type(GPU) == 16


def test_release_profile_follows_estimates_and_preemptions() -> None:
    s = Scene(nodes=1)
    s.running(job("a").gpus(1), on("n0000", 0), end=100)
    s.running(job("b").gpus(1), on("n0000", 1), end=50)
    assert [j for _, j in s.state.release_profile()] == ["b", "a"]
    s.state.update_expected_end("b", 500)
    assert s.state.release_profile() == [(100, "a"), (500, "b")]
    s.state.mark_preempting("b", 120)
    assert s.state.release_profile() == [(100, "a"), (120, "b")]
    assert s.state.running["b"].preempt_deadline == 120


def test_counts_per_type_and_site() -> None:
    st = ClusterState(mixed_types(2, 1))
    assert st.free_of_type(GPU) == 16 and st.free_of_type("l40s") == 8
    assert st.free_of_type("a100") == 0
    st2 = ClusterState(with_sites(("ma-1", 2), ("za-1", 1)))
    assert st2.free_in_site("ma-1") == 16 and st2.free_in_site("za-1") == 8
    assert st2.free_total == 24


def _overlay(view: View) -> tuple[object, ...]:
    masks = [view.mask(i) for i in range(len(view.state.cluster.nodes))]
    return (masks, [list(b) for b in view.buckets], list(view.free))


def test_a_view_put_back_by_restore_or_rollback_is_as_it_was() -> None:
    # A whole busy node, a part of a node, and a node shared by two jobs: the three
    # ways a release can land on a node.
    s = Scene(nodes=3)
    s.running(job("whole").gpus(8), "n0000")
    s.running(job("part").gpus(3), on("n0001", 0, 1, 2))
    s.running(job("x").gpus(2), on("n0002", 0, 1))
    s.running(job("y").gpus(2), on("n0002", 2, 3))
    view = View(s.state)
    view.take(((1, 0b11111000),))  # the pass started something on n0001's free GPUs
    before = _overlay(view)
    free_before = sum(view.free)

    saved = view.save()
    for job_id in ("whole", "part", "x"):
        view.give_back(view.held(job_id))
    assert sum(view.free) == free_before + 8 + 3 + 2
    assert view.mask(0) == 0xFF and view.mask(1) == 0b00000111
    assert view.mask(2) == 0b11110011
    view.restore(saved)
    assert _overlay(view) == before

    mark = view.mark()
    for job_id in ("whole", "y"):
        view.give(view.held(job_id))
    assert view.mask(0) == 0xFF and view.mask(2) == 0b11111100
    view.rollback(mark)
    assert _overlay(view) == before
