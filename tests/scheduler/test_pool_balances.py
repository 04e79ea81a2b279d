"""Allocation balances per pool: a job starts only in a (site, GPU type) pool where
its project has time left, and the overdraft rule holds per pool.

The factory here has two sites of H100 (``za-1``, ``ng-1``) and an L40S pool at
``za-1``, each of one 8-GPU node unless a case says otherwise.
"""

from __future__ import annotations

from collections import Counter

import pytest

from masnaa.domain import Cluster
from masnaa.scheduler import WaitCode

from .builders import GPU, Scene, job, started

HOUR = 3600.0
L40S = "l40s"
ZA, NG = ("za-1", GPU), ("ng-1", GPU)
ZA_L40S = ("za-1", L40S)


def factory(nodes: int = 1) -> Scene:
    return Scene(
        cluster=Cluster.merge(
            [
                Cluster.uniform(nodes, site="za-1", name_prefix="za-", gpu_type=GPU),
                Cluster.uniform(nodes, site="ng-1", name_prefix="ng-", gpu_type=GPU),
                Cluster.uniform(nodes, site="za-1", name_prefix="zl-", gpu_type=L40S),
            ]
        )
    )


def sites_of(scene: Scene, policy: str = "masnaa") -> dict[str, tuple[str, str]]:
    d = scene.decide(policy)
    return {s.job_id: (s.site, s.gpu_type) for s in d.starts}


@pytest.mark.parametrize(
    ("funds", "sites", "types", "where"),
    [
        # The audit's case: a grant at za-1 is no licence to run at ng-1.
        ({ZA: 0.01 * HOUR}, ("ng-1",), (GPU,), None),
        ({ZA: 10 * HOUR}, None, (GPU,), ZA),
        ({NG: 10 * HOUR}, None, (GPU,), NG),
        ({ZA: 10 * HOUR, NG: 10 * HOUR}, ("ng-1",), (GPU,), NG),
        # A pool listed with nothing left is as good as absent.
        ({ZA: 0.0, NG: 10 * HOUR}, ("za-1",), (GPU,), None),
        # GPU types count too: the L40S pool funds the job's second choice.
        ({ZA_L40S: 10 * HOUR}, None, (GPU, L40S), ZA_L40S),
        ({ZA_L40S: 10 * HOUR}, None, (GPU,), None),
    ],
)
def test_a_job_starts_only_in_a_pool_with_time_left(
    funds: dict[tuple[str, str], float],
    sites: tuple[str, ...] | None,
    types: tuple[str, ...],
    where: tuple[str, str] | None,
) -> None:
    s = factory()
    s.balances = {"t1-p": funds}
    b = job("j").gpus(8).limit(HOUR).types(*types)
    s.pending(b.sites(*sites) if sites else b)
    for policy in ("masnaa", "fifo-backfill", "las"):
        d = s.decide(policy)
        if where is None:
            assert started(d) == [], policy
            w = d.wait_for("j", "t1-p")
            assert w.code is WaitCode.ALLOCATION_EXHAUSTED, policy
        else:
            assert [(x.site, x.gpu_type) for x in d.starts] == [where], policy


def test_the_reason_names_the_pools_asked_and_those_with_time_left() -> None:
    s = factory()
    s.balances = {"t1-p": {ZA: 2 * HOUR, ZA_L40S: 0.0}}
    s.pending(job("j").gpus(8).sites("ng-1"))
    d = s.decide("masnaa")
    w = d.wait_for("j", "t1-p")
    assert w.code is WaitCode.ALLOCATION_EXHAUSTED
    assert "where the job may run (ng-1:h100-sxm-80gb)" in w.message
    assert "time is left in za-1:h100-sxm-80gb (2.0 GPU-hours)" in w.message
    assert "l40s" not in w.message
    # The project has time elsewhere: it is not spent, and its other jobs still start.
    assert "t1-p" not in d.spent


def test_the_overdraft_bound_holds_per_pool() -> None:
    # 8 GPU-hours in each H100 pool: two 4-GPU one-hour jobs per pool, the fifth waits.
    s = factory(nodes=2)
    s.balances = {"t1-p": {ZA: 8 * HOUR, NG: 8 * HOUR}}
    s.pending(*(job(f"a{i}").gpus(4).limit(HOUR).submitted(i) for i in range(5)))
    d = s.decide("masnaa")
    where = Counter((x.site, x.gpu_type) for x in d.starts)
    assert where == {ZA: 2, NG: 2}
    assert d.wait_for("a4", "t1-p").code is WaitCode.ALLOCATION_EXHAUSTED
    assert "t1-p" in d.spent  # every pool spent by the pass's own starts


def test_a_pool_spent_within_the_pass_leaves_the_others_open() -> None:
    # za-1 covers one job; the next goes to ng-1 although za-1 has room for it.
    s = factory(nodes=2)
    s.balances = {"t1-p": {ZA: 1, NG: 10 * HOUR}}
    s.pending(*(job(f"a{i}").gpus(8).limit(HOUR).sites("za-1", "ng-1").submitted(i)
                for i in range(3)))
    got = sites_of(s)
    assert Counter(got.values()) == {ZA: 1, NG: 2}


def test_a_job_narrowed_to_its_pools_teaches_nothing_to_jobs_of_other_projects() -> None:
    # ng-1 is full. Project p's job (only ng-1 funded) fails to fit there; project q's
    # job of the same shape and eligibility, funded everywhere, must still start at za-1.
    s = factory()
    s.running(job("r").gpus(8).tenant("x"), "ng-0000")
    s.balances = {"p": {NG: 10 * HOUR}, "q": {ZA: 10 * HOUR, NG: 10 * HOUR}}
    s.pending(job("jp").tenant("a").project("p").gpus(4).submitted(0))
    s.pending(job("jq").tenant("a").project("q").gpus(4).submitted(1))
    for policy in ("masnaa", "fifo-backfill", "las"):
        got = sites_of(s, policy)
        assert got == {"jq": ZA}, policy


def test_estimates_of_narrowed_jobs_are_their_own() -> None:
    # Both pools busy until different times: a job that may use only ng-1 is
    # estimated when ng-1 frees, not as the job of its shape that may use za-1.
    s = factory()
    s.running(job("rz").gpus(8).tenant("x"), "za-0000", end=HOUR)
    s.running(job("rn").gpus(8).tenant("x"), "ng-0000", end=5 * HOUR)
    s.balances = {"p": {NG: 100 * HOUR}, "q": {ZA: 100 * HOUR, NG: 100 * HOUR}}
    # A first blocked job of another shape takes the reservation, so the two of one
    # shape are estimated together, in one walk.
    s.pending(job("j0").tenant("c").project("q").gpus(7).submitted(-1))
    s.pending(job("jp").tenant("a").project("p").gpus(8).submitted(0))
    s.pending(job("jq").tenant("b").project("q").gpus(8).submitted(1))
    d = s.decide("fifo-backfill")
    assert d.reservations[0].job_id == "j0"
    assert d.wait_for("jp", "p").estimated_start == 5 * HOUR
    assert d.wait_for("jq", "q").estimated_start == 2 * HOUR  # after j0 reserved za-1 at 1 h


def test_without_balances_nothing_is_narrowed() -> None:
    s = factory()
    s.pending(job("j").gpus(8).sites("ng-1"))
    assert sites_of(s) == {"j": NG}
