"""Site choice: among the eligible sites that can start a job now, which one it lands at.

The rule (scheduler/place.py, docs/scheduler.md "Site choice"): a site where the
job starts now; then the tenant's preference, the price per GPU-hour, the fit,
the share of GPUs free, the site's name. Each row of the table gives sites, prices,
preferences and what runs where, and the site the job must land at.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masnaa.domain import Cluster, Tenant
from masnaa.scheduler import Decision, SchedulerConfig, WaitCode, decide

from .builders import GPU, Scene, job, with_sites

A100 = "a100-80gb"


@dataclass
class Case:
    name: str
    sites: tuple[tuple[str, int], ...]
    """(site, nodes of 8 GPUs)."""
    gpus: int
    expect: str
    prices: dict[str, float] = field(default_factory=dict)
    """site → price of a GPU-hour (GPU type ``GPU``)."""
    prefer: tuple[str, ...] = ()
    busy: dict[str, int] = field(default_factory=dict)
    """node → GPUs taken by a running job on it."""
    job_sites: tuple[str, ...] | None = None
    reason: str | None = None
    """A phrase ``Decision.site_choices`` must hold (``None``: no reason expected)."""


CASES = [
    Case("cheapest eligible site", (("ma-1", 2), ("za-1", 2)), 8, "za-1",
         prices={"ma-1": 3.0, "za-1": 2.5}, reason="it is cheaper"),
    Case("preference beats price", (("ma-1", 2), ("za-1", 2)), 8, "ma-1",
         prices={"ma-1": 3.0, "za-1": 2.5}, prefer=("ma-1",), reason="prefers it"),
    Case("a job never waits for its preferred site", (("ma-1", 1), ("za-1", 1)), 8, "za-1",
         prices={"ma-1": 1.0, "za-1": 9.0}, prefer=("ma-1",), busy={"ma-1-0000": 1}),
    Case("preference order: the first listed that can start it", (("ma-1", 1), ("za-1", 1),
         ("ke-1", 1)), 4, "ke-1", prefer=("eg-1", "ke-1", "za-1"), reason="prefers it"),
    Case("an unlisted site comes after listed ones whatever its price", (("ma-1", 1),
         ("za-1", 1)), 4, "za-1", prices={"ma-1": 0.5, "za-1": 5.0}, prefer=("za-1",),
         reason="prefers it"),
    Case("a site without a price comes after priced ones", (("ma-1", 2), ("za-1", 2)), 4,
         "ma-1", prices={"ma-1": 7.0}, busy={"za-1-0000": 4},
         reason="7.00 per GPU-hour against no price"),
    Case("never outside the eligible sites, however cheap", (("ma-1", 2), ("za-1", 2)), 8,
         "ma-1", prices={"ma-1": 9.0, "za-1": 1.0}, job_sites=("ma-1",)),
    Case("equal price: the tighter fit", (("ma-1", 2), ("za-1", 2)), 4, "za-1",
         prices={"ma-1": 2.0, "za-1": 2.0}, busy={"za-1-0001": 4}, reason="more tightly"),
    Case("equal price and fit: the larger share free", (("ma-1", 2), ("za-1", 4)), 8, "ma-1",
         busy={"za-1-0000": 8, "za-1-0001": 8, "za-1-0002": 1}, reason="larger share"),
    Case("a share, not a count: 8 of 16 free beats 16 of 48", (("ma-1", 2), ("za-1", 6)), 8,
         "ma-1", busy={"ma-1-0000": 8, **{f"za-1-000{k}": 8 for k in range(4)}},
         reason="50% against 33%"),
    Case("equal on everything: the first name", (("za-1", 2), ("ma-1", 2)), 8, "ma-1",
         prices={"ma-1": 2.0, "za-1": 2.0}, reason="its name comes first"),
    Case("price among the job's own sites", (("ma-1", 1), ("za-1", 1), ("ng-1", 1)), 2,
         "ng-1", prices={"ma-1": 1.0, "za-1": 3.0, "ng-1": 2.0}, job_sites=("za-1", "ng-1"),
         reason="rather than za-1 (both eligible and able to start it now): it is cheaper"),
    Case("one site that fits: no reason needed", (("ma-1", 1), ("za-1", 1)), 8, "za-1",
         prices={"ma-1": 1.0, "za-1": 2.0}, busy={"ma-1-0000": 2}),
]


def _decide(scene: Scene, prices: dict[tuple[str, str], float] | None,
            policy: str = "fifo-backfill", now: float = 0.0) -> Decision:
    snap = dataclasses.replace(scene.snapshot(), site_prices=prices)
    return decide(snap, scene.queue, now, SchedulerConfig(policy=policy))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("policy", ["fifo-backfill", "masnaa"])
def test_the_job_lands_where_the_rule_says(case: Case, policy: str) -> None:
    scene = Scene(cluster=with_sites(*case.sites))
    for i, (node, gpus) in enumerate(case.busy.items()):
        scene.running(job(f"r{i}").gpus(gpus).tenant("other"), node, end=1e9)
    scene.tenants["t1"] = Tenant("t1", preferred_sites=case.prefer)
    b = job("j").gpus(case.gpus)
    if case.job_sites is not None:
        b.sites(*case.job_sites)
    scene.pending(b)
    d = _decide(scene, {(s, GPU): p for s, p in case.prices.items()}, policy)
    (start,) = d.starts
    assert start.site == case.expect
    if case.reason is None:
        assert "j" not in d.site_choices
    else:
        said = str(d.site_choices["j"])
        assert said.startswith(f"site {case.expect} rather than")
        assert case.reason in said


def test_a_single_site_factory_takes_the_plain_path_and_gives_no_reason() -> None:
    scene = Scene(nodes=2).pending(job("a").gpus(8), job("b").gpus(8))
    d = _decide(scene, {("site-1", GPU): 2.0})
    assert [s.site for s in d.starts] == ["site-1", "site-1"]
    assert d.site_choices == {}


def test_gpu_type_preference_comes_before_site_price() -> None:
    # h100 only at the dear site, a100 only at the cheap one: the job asked h100 first.
    dear = Cluster.uniform(1, site="ma-1", name_prefix="ma-", gpu_type=GPU)
    cheap = Cluster.uniform(1, site="za-1", name_prefix="za-", gpu_type=A100)
    scene = Scene(cluster=Cluster.merge([dear, cheap]))
    scene.pending(job("j").gpus(4).types(GPU, A100))
    d = _decide(scene, {("ma-1", GPU): 9.0, ("za-1", A100): 1.0})
    assert [(s.site, s.gpu_type) for s in d.starts] == [("ma-1", GPU)]


def test_jobs_fill_the_cheap_site_first_then_spill_over() -> None:
    scene = Scene(cluster=with_sites(("ma-1", 2), ("za-1", 2)))
    scene.pending(*(job(f"j{i}").gpus(8) for i in range(4)))
    d = _decide(scene, {("ma-1", GPU): 3.0, ("za-1", GPU): 2.0})
    assert [s.site for s in d.starts] == ["za-1", "za-1", "ma-1", "ma-1"]
    # Without prices the same jobs spread by the share of GPUs free, then by name.
    fit_only = _decide(scene, None)
    assert sorted(s.site for s in fit_only.starts) == ["ma-1", "ma-1", "za-1", "za-1"]


def test_a_blocked_job_is_reserved_at_the_site_where_it_starts_first() -> None:
    # Both sites full; ma-1 (cheaper) frees at 5000 s, za-1 at 1000 s: the estimate and the
    # reservation target za-1, the earliest, whatever the price.
    scene = Scene(cluster=with_sites(("ma-1", 1), ("za-1", 1)))
    scene.running(job("r-ma").gpus(8).tenant("o"), "ma-1-0000", end=5000.0)
    scene.running(job("r-za").gpus(8).tenant("o"), "za-1-0000", end=1000.0)
    scene.pending(job("j").gpus(8))
    d = _decide(scene, {("ma-1", GPU): 1.0, ("za-1", GPU): 9.0})
    assert not d.starts
    (res,) = d.reservations
    assert res.nodes == ("za-1-0000",) and res.start_time == 1000.0
    assert d.wait_for("j").code is WaitCode.RESERVED and d.wait_for("j").estimated_start == 1000.0


# --------------------------------------------------------------------- property

SITE_NAMES = ("ma-1", "za-1", "ng-1", "ke-1")


@st.composite
def worlds(draw: st.DrawFn) -> tuple[
    tuple[tuple[str, int], ...], dict[str, list[int]], dict[str, float], tuple[str, ...],
    tuple[str, ...] | None, int,
]:
    n = draw(st.integers(2, 4))
    names = SITE_NAMES[:n]
    sites = tuple((s, draw(st.integers(1, 3))) for s in names)
    busy = {s: [draw(st.integers(0, 8)) for _ in range(k)] for s, k in sites}
    prices = {s: draw(st.sampled_from([1.0, 2.0, 2.5, 4.0])) for s in names
              if draw(st.booleans()) or s == names[0]}
    prefer = tuple(draw(st.permutations(names))[: draw(st.integers(0, n))])
    eligible = draw(st.one_of(st.none(), st.lists(st.sampled_from(names), min_size=1,
                                                   unique=True).map(tuple)))
    return sites, busy, prices, prefer, eligible, draw(st.integers(1, 8))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_placement_stays_in_the_eligible_sites_and_is_the_best_by_the_rule(
    world: tuple[tuple[tuple[str, int], ...], dict[str, list[int]], dict[str, float],
                 tuple[str, ...], tuple[str, ...] | None, int],
) -> None:
    sites, busy, prices, prefer, eligible, gpus = world
    scene = Scene(cluster=with_sites(*sites))
    for s, taken in busy.items():
        for k, used in enumerate(taken):
            if used:
                scene.running(job(f"r-{s}-{k}").gpus(used).tenant("o"), f"{s}-{k:04d}", end=1e9)
    scene.tenants["t1"] = Tenant("t1", preferred_sites=prefer)
    b = job("j").gpus(gpus)
    if eligible is not None:
        b.sites(*eligible)
    scene.pending(b)
    d = _decide(scene, {(s, GPU): p for s, p in prices.items()})

    # The reference, written independently of place.py: a one-task job fits a site when a
    # node there has enough free GPUs; its key is (preference, price, left over on the
    # tightest node, -share of the site's GPUs free, site name).
    order = [s for s, _ in sites]
    allowed = order if eligible is None else [s for s in order if s in eligible]
    keys = {}
    for s in allowed:
        free = [8 - used for used in busy[s]]
        holding = [f for f in free if f >= gpus]
        if holding:
            pref = prefer.index(s) if s in prefer else len(prefer)
            share = sum(free) / (8 * len(free))
            keys[s] = (pref, prices.get(s, float("inf")), min(holding) - gpus, -share, s)
    if not keys:
        assert not d.starts
        return
    (start,) = d.starts
    assert start.site in allowed
    assert start.site == min(keys, key=lambda s: keys[s])
    assert (len(keys) > 1) == ("j" in d.site_choices)
