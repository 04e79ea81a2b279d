"""Small random replays, end to end, under every policy and the twin's options.

Fixed traces exercise the options that reported figures use. Three replays that
never ended were found only in options they do not use (a pass interval; las without
checkpoints, or with checkpoints rarer than its promoted jobs' turns), so here
hypothesis draws the trace, the cluster and the options, and every replay must:
- end (an alarm fails it otherwise);
- account for every job: done (perhaps killed at its limit), rejected or stranded,
  each rejection and stranding counted under a reason;
- hold the analytic bounds (JCT ≥ runtime; makespan ≥ the work and release bounds);
- give the same report with the twin's fast paths on and off.

``MASNAA_RANDOM_REPLAYS=N`` draws N replays instead of 60: a soak to run by hand after
a change to the engine or a policy (3,000 take a few minutes).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twin_builders import deadline, trace

from masnaa.domain import Cluster
from masnaa.scheduler import POLICIES
from masnaa.sim.engine import DONE, LOST_EVERY_RUN, REJECTED, STRANDED, Engine
from masnaa.sim.metrics import summarize
from masnaa.sim.records import EngineConfig, RunResult
from masnaa.sim.shape import tenancy
from masnaa.sim.trace import Trace

SPEED_ONLY = ("passes", "passes_skipped", "decide_seconds", "wall_seconds")
TENANTS = ("a", "b", "c", "d")
GANGS = (1, 1, 1, 2, 4, 8, 8, 16, 32)
# The defaults, and settings a site may choose that change who may stop whom.
KNOBS: tuple[tuple[tuple[str, float | int | bool], ...], ...] = (
    (), (), (),
    (("short_first_in_tenant", True), ("spare_after_requeues", 0), ("victim_max_loss", 1800.0)),
    (("promote_ahead_of_tenants", True), ("starvation_limit", 3_600.0)),
    (("fair_share_preemption", True), ("min_run_before_preemption", 0.0)),
    (("starvation_limit", 0.0), ("tenant_starvation_limit", 0.0), ("reclaim_after", 0.0)),
    (("hold_reservation", True),),
)


@st.composite
def rows(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    n = draw(st.integers(1, 60))
    out: list[tuple[Any, ...]] = []
    for _ in range(n):
        # Submissions with fractions of a second, so pass ticks and ends fall between.
        submit = draw(st.floats(0, 20_000, allow_nan=False)) if draw(st.booleans()) else \
            float(draw(st.integers(0, 20_000)))
        runtime = float(draw(st.sampled_from((1, 30, 600, 3_600, 20_000, 90_000))))
        runtime *= draw(st.floats(0.5, 2.0))
        gpus = draw(st.sampled_from(GANGS))
        tenant = draw(st.sampled_from(TENANTS))
        limit = draw(st.sampled_from((None, None, 0.5, 1.0, 3.0)))
        row: tuple[Any, ...] = (submit, runtime, gpus, tenant)
        if limit is not None:
            row += (max(1.0, runtime * limit),)
        out.append(row)
    return out


def _replay(t: Trace, nodes: int, cfg: EngineConfig) -> tuple[RunResult, dict[str, Any]]:
    cluster = Cluster.uniform(nodes)
    tenants, quotas = tenancy(t, cluster)
    with deadline(60):
        result = Engine(t, cluster, tenants, quotas, cfg).run()
    doc = summarize(result)
    for k in SPEED_ONLY:
        doc["engine"].pop(k)
    doc.pop("engine_seconds", None)
    return result, doc


EXAMPLES = int(os.environ.get("MASNAA_RANDOM_REPLAYS", "60"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=rows(),
    nodes=st.integers(1, 4),
    policy=st.sampled_from(sorted(POLICIES)),
    checkpoint=st.sampled_from((None, 600.0, 1_800.0, 30_000.0)),
    pass_interval=st.sampled_from((0.0, 0.0, 60.0, 7.5)),
    knobs=st.sampled_from(KNOBS),
)
def test_a_random_replay_ends_accounts_for_every_job_and_holds_its_bounds(
    rows: list[tuple[Any, ...]], nodes: int, policy: str,
    checkpoint: float | None, pass_interval: float,
    knobs: tuple[tuple[str, float | int | bool], ...],
) -> None:
    t = trace(*rows)
    cfg = EngineConfig(policy=policy, checkpoint_interval=checkpoint,
                       min_pass_interval=pass_interval, knobs=knobs)
    fast, fast_doc = _replay(t, nodes, cfg)
    plain_cfg = EngineConfig(policy=policy, checkpoint_interval=checkpoint,
                             min_pass_interval=pass_interval, knobs=knobs,
                             skip_full_passes=False, reuse_walks=False)
    _, plain_doc = _replay(t, nodes, plain_cfg)
    assert fast_doc == plain_doc

    status = list(fast.status)
    assert all(s in (DONE, REJECTED, STRANDED) for s in status), status
    assert sum(fast.rejected.values()) == status.count(REJECTED)
    assert sum(fast.stranded.values()) == status.count(STRANDED)
    # A gang larger than the cluster is rejected; no job that fits is.
    for i, s in enumerate(status):
        assert (s == REJECTED) == (fast.gpus[i] > 8 * nodes)
    # Jobs that fit end: the tenancy gives every tenant with demand a way to run. The
    # one exception is a job the engine gave up after losing every run (las, whose
    # promoted jobs may take turns more often than jobs checkpoint).
    assert set(fast.stranded) <= {LOST_EVERY_RUN}
    for i, s in enumerate(status):
        if s == DONE:
            assert fast.end[i] - fast.submit[i] >= min(fast.work[i], _limit(rows[i])) - 1e-6
    assert fast_doc["bounds"]["hold"]
    # The time series hold no more than the cluster in any bin (give or take their
    # rounding to 5 decimals), and end with the run.
    series = fast_doc["series"]
    assert max(series["utilisation"], default=0.0) <= 1.0 + 1e-5
    shares = zip(*series["tenant_share"].values(), strict=True)
    assert all(sum(b) <= 1.0 + 1e-4 for b in shares)
    if fast_doc["makespan"] > 0:
        bins = len(series["utilisation"])
        assert (bins - 1) * series["bin_seconds"] <= fast_doc["makespan"]


def _limit(row: tuple[Any, ...]) -> float:
    return float(row[4]) if len(row) > 4 else float("inf")
