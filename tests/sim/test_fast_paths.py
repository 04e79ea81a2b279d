"""The twin's fast paths change speed only: the same replay gives the same result.

Four shortcuts are checked against the plain way on seeded workloads:
passes without explanations (``estimate_depth=0``, ``explain_waits=False``),
skipped futile passes (``EngineConfig.skip_full_passes``), reservation walks
and failed preemption searches handed from pass to pass (``EngineConfig.reuse_walks``,
``scheduler.PassMemo``), and sub-queues passed over because their preemption
already failed in the pass (``bounds._searched``).
"""

from __future__ import annotations

from typing import Any

import pytest
from twin_builders import trace

from masnaa.domain import Cluster
from masnaa.scheduler import POLICIES, SchedulerConfig, bounds
from masnaa.sim.engine import Engine
from masnaa.sim.loaders import TraceSource, load_trace
from masnaa.sim.metrics import summarize
from masnaa.sim.records import EngineConfig
from masnaa.sim.shape import tenancy
from masnaa.sim.trace import Trace

SPEED_ONLY = ("passes", "passes_skipped", "decide_seconds", "wall_seconds")


def _busy() -> Trace:
    # Offered load well above capacity so the queue builds and the cluster stays full.
    return load_trace("synthetic", TraceSource(jobs=700, seed=11, capacity_gpus=48,
                                               target_load=1.4, tenants=4))


def _engine(t: Trace, policy: str, nodes: int, **cfg: Any) -> Engine:
    cluster = Cluster.uniform(nodes)
    tenants, quotas = tenancy(t, cluster)
    return Engine(t, cluster, tenants, quotas, EngineConfig(policy=policy, **cfg))


def _result(engine: Engine) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = summarize(engine.run())
    speed = {k: doc["engine"].pop(k) for k in SPEED_ONLY}
    doc.pop("engine_seconds", None)
    return doc, speed


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_skipping_futile_passes_gives_the_same_replay(policy: str) -> None:
    t = _busy()
    plain, plain_speed = _result(_engine(t, policy, 6, skip_full_passes=False))
    fast, fast_speed = _result(_engine(t, policy, 6))
    assert fast == plain
    assert plain_speed["passes_skipped"] == 0
    if POLICIES[policy].preemptive:
        assert fast_speed["passes_skipped"] == 0
    else:
        assert fast_speed["passes_skipped"] > 0
        assert fast_speed["passes"] + fast_speed["passes_skipped"] == plain_speed["passes"]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_reusing_reservation_walks_gives_the_same_replay(policy: str) -> None:
    t = _busy()
    plain, _ = _result(_engine(t, policy, 6, reuse_walks=False))
    engine = _engine(t, policy, 6)
    fast, _ = _result(engine)
    assert fast == plain
    memo = engine.memo
    assert memo is not None
    if POLICIES[policy].backfill:
        assert memo.hits > 0 and memo.misses > 0  # the walk was both reused and redone
    else:
        assert memo.hits == memo.misses == 0
    # masnaa's reclaims give a key to their searches; las's test moves with the clock.
    assert (memo.searches_skipped > 0) == (policy == "masnaa")


@pytest.mark.parametrize(
    "knobs",
    [
        (("short_first_in_tenant", True),),
        (("fair_share_preemption", True),),
        (("short_first_in_tenant", True), ("spare_after_requeues", 0)),
    ],
    ids=["short-first", "fair-share-swaps", "short-first-never-spared"],
)
def test_masnaa_swaps_are_never_answered_from_the_memo(
    knobs: tuple[tuple[str, object], ...]
) -> None:
    # Swaps read run times and attained service, which move with the clock: a search
    # that failed on a state may succeed on the same state later, so such searches must
    # not be remembered (``Policy.victim_key``).
    t = _busy()
    plain, _ = _result(_engine(t, "masnaa", 6, reuse_walks=False, knobs=knobs))
    engine = _engine(t, "masnaa", 6, knobs=knobs)
    fast, _ = _result(engine)
    assert fast == plain
    assert engine.memo is not None and engine.memo.searches_skipped == 0
    assert plain["preemptions"] > 0


class _Recording(Engine):
    """An engine that notes the virtual time of each rejection."""

    rejected_at: dict[int, float]

    def _fail(self, i: int, code: str) -> None:
        self.rejected_at = getattr(self, "rejected_at", {})
        self.rejected_at[i] = self.now
        super()._fail(i, code)


@pytest.mark.parametrize("policy", ["fifo", "fifo-backfill"])
def test_a_new_shape_that_cannot_run_is_rejected_on_arrival_even_when_the_cluster_is_full(
    policy: str,
) -> None:
    # Job 2 is too large for the cluster and arrives while job 0 holds every GPU.
    t = trace((0, 1000, 8, "a"), (10, 100, 4, "a"), (20, 100, 16, "b"), (30, 100, 8, "a"))
    cluster = Cluster.uniform(1)
    tenants, quotas = tenancy(t, cluster)
    runs = [_Recording(t, cluster, tenants, quotas, EngineConfig(policy=policy,
                                                                 skip_full_passes=skip))
            for skip in (False, True)]
    docs = [_result(e) for e in runs]
    assert docs[1][0] == docs[0][0]
    assert docs[1][1]["passes_skipped"] > 0
    assert runs[0].rejected_at == runs[1].rejected_at == {2: 20.0}


@pytest.mark.parametrize("policy", ["fifo", "fifo-backfill"])
def test_skipped_passes_keep_the_pass_pacing(policy: str) -> None:
    t = _busy()
    plain, _ = _result(_engine(t, policy, 6, skip_full_passes=False, min_pass_interval=300.0))
    fast, speed = _result(_engine(t, policy, 6, min_pass_interval=300.0))
    assert fast == plain
    assert speed["passes_skipped"] > 0


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_passes_without_explanations_start_the_same_jobs(policy: str) -> None:
    t = _busy()
    with_estimates = _engine(t, policy, 6, skip_full_passes=False)
    twin = with_estimates.sched_cfg
    assert twin.estimate_depth == 0 and not twin.explain_waits  # the twin's own settings
    with_estimates.sched_cfg = SchedulerConfig(policy=policy, review_times=True)
    assert with_estimates.sched_cfg.estimate_depth > 0 and with_estimates.sched_cfg.explain_waits
    plain, _ = _result(with_estimates)
    fast, _ = _result(_engine(t, policy, 6, skip_full_passes=False))
    assert fast == plain


@pytest.mark.parametrize("frozen_elsewhere", [False, True])
def test_a_replay_restores_the_garbage_collector_settings(frozen_elsewhere: bool) -> None:
    import gc

    if frozen_elsewhere:  # as in a server that froze its start-up objects (api.app)
        gc.freeze()
    try:
        before = (gc.get_threshold(), gc.isenabled())
        _engine(_busy(), "fifo", 6).run()
        assert (gc.get_threshold(), gc.isenabled()) == before
        if frozen_elsewhere:  # what others froze stays frozen
            assert gc.get_freeze_count() > 0
    finally:
        if frozen_elsewhere:
            gc.unfreeze()


@pytest.mark.interpreted_core
@pytest.mark.parametrize("policy", ["las", "masnaa"])
def test_passing_over_sub_queues_whose_preemption_failed_gives_the_same_replay(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With backfill_depth out of reach, a skip may change nothing but speed: the same
    # replay with every such sub-queue tried job by job must agree to the digit.
    t = _busy()
    knobs = (("backfill_depth", 10**6),)
    passed = [0]
    real = bounds._searched

    def counting(*args: Any) -> bool:
        found = real(*args)
        passed[0] += found
        return found

    monkeypatch.setattr(bounds, "_searched", counting)
    fast, _ = _result(_engine(t, policy, 6, knobs=knobs))
    assert passed[0] > 0  # the rule was used, not just present
    monkeypatch.setattr(bounds, "_searched", lambda *args: False)
    plain, _ = _result(_engine(t, policy, 6, knobs=knobs))
    assert fast == plain
