"""Invariants of every policy under random workloads (hypothesis).

For random clusters (sites, GPU types, node sizes, drained nodes), random
running jobs and random pending jobs, every policy's decision must:
- place each started gang whole, tasks within nodes, on GPUs free right now, on
  available nodes of an acceptable type at an allowed site, no GPU twice;
- be applicable by a driver (``ClusterState.allocate`` accepts every start);
- preempt only running jobs not already being preempted, each at most once;
- be deterministic (same inputs, same decision) and leave its inputs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masnaa.domain import Cluster, Job, Placement, PlacementSlice, Quota, RunningJob, Tenant
from masnaa.scheduler import (
    POLICIES,
    ClusterState,
    Decision,
    PendingQueue,
    SchedulerConfig,
    Snapshot,
    UsageLedger,
    WaitCode,
    decide,
)

TYPES = ("h100", "l40s")
SITES = ("ma-1", "za-1")
CLASSES = ("low", "normal", "high")


@dataclass
class World:
    cluster: Cluster
    running: list[RunningJob]
    pending: list[tuple[Job, float]]
    drained: list[str]
    quotas: tuple[Quota, ...]
    balances: dict[str, dict[tuple[str, str], float]] | None
    now: float

    def build(self) -> tuple[Snapshot, PendingQueue]:
        state = ClusterState(self.cluster)
        usage = UsageLedger(half_life=3600.0)
        for r in self.running:
            state.allocate(r)
            usage.start(r.job.id, r.job.tenant, r.job.total_gpus, r.start_time)
        for n in self.drained:
            state.set_node_available(n, False)
        queue = PendingQueue()
        for j, attained in self.pending:
            queue.add(j, attained)
        oracle = {j.id: 10.0 + (hash(j.id) % 1000) for j, _ in self.pending}
        oracle.update({r.job.id: 50.0 + (hash(r.job.id) % 777) for r in self.running})
        tenants = {t: Tenant(t, share=1.0 + i) for i, t in enumerate(("a", "b", "c"))}
        return (
            Snapshot(
                state=state,
                usage=usage,
                tenants=tenants,
                quotas=self.quotas,
                balances=self.balances,
                oracle=oracle,
            ),
            queue,
        )


@st.composite
def worlds(draw: st.DrawFn) -> World:
    parts = []
    for site in SITES[: draw(st.integers(1, 2))]:
        for gpu_type in TYPES[: draw(st.integers(1, 2))]:
            parts.append(
                Cluster.uniform(
                    draw(st.integers(1, 4)),
                    gpus_per_node=draw(st.sampled_from([4, 8])),
                    gpu_type=gpu_type,
                    site=site,
                    nodes_per_leaf=2,
                    name_prefix=f"{site}-{gpu_type}-",
                )
            )
    merged = Cluster.merge(parts)
    sites = {s.name: s for s in merged.sites}
    cluster = Cluster(sites=tuple(sites.values()), gpu_types=merged.gpu_types, nodes=merged.nodes)
    now = draw(st.floats(1000.0, 100_000.0))
    # Running jobs: single-node, on the lowest free GPUs of a drawn node.
    free = {n.name: list(range(n.gpu_count)) for n in cluster.nodes}
    running = []
    for k in range(draw(st.integers(0, 10))):
        node = draw(st.sampled_from(cluster.nodes))
        if not free[node.name]:
            continue
        size = draw(st.integers(1, len(free[node.name])))
        gpus, free[node.name] = free[node.name][:size], free[node.name][size:]
        j = Job(
            f"r{k}",
            draw(st.sampled_from("abc")),
            "p",
            1,
            size,
            (node.gpu_type,),
            draw(st.floats(60.0, 20_000.0)),
            priority_class=draw(st.sampled_from(CLASSES)),
        )
        start = now - draw(st.floats(0.0, 20_000.0))
        running.append(
            RunningJob(
                j,
                Placement((PlacementSlice(node.name, tuple(gpus)),)),
                node.gpu_type,
                start,
                start + j.time_limit,
                attained_service=draw(st.floats(0.0, 1e5)),
            )
        )
    pending = []
    for k in range(draw(st.integers(0, 14))):
        types = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=2, unique=True))
        sites_ = draw(
            st.one_of(
                st.none(), st.lists(st.sampled_from(SITES), min_size=1, max_size=2, unique=True)
            )
        )
        j = Job(
            f"p{k}",
            draw(st.sampled_from("abc")),
            draw(st.sampled_from(["pa", "pb"])),
            draw(st.integers(1, 3)),
            draw(st.sampled_from([1, 2, 4, 8])),
            tuple(types),
            draw(st.floats(60.0, 20_000.0)),
            priority_class=draw(st.sampled_from(CLASSES)),
            submit_time=now - draw(st.floats(0.0, 50_000.0)),
            sites=None if sites_ is None else tuple(sites_),
        )
        pending.append((j, draw(st.sampled_from([0.0, 0.0, 5_000.0, 100_000.0]))))
    drained = draw(
        st.lists(st.sampled_from([n.name for n in cluster.nodes]), max_size=2, unique=True)
    )
    quotas: tuple[Quota, ...] = ()
    if draw(st.booleans()):
        quotas = tuple(
            Quota(
                t,
                site,
                gpu_type,
                draw(st.integers(0, 8)),
                draw(st.one_of(st.none(), st.integers(0, 8))),
                draw(st.one_of(st.none(), st.integers(0, 8))),
            )
            for t in "ab"
            for site in sites
            for gpu_type in {n.gpu_type for n in cluster.nodes}
        )
    balances = None
    if draw(st.booleans()):
        # Per pool, some pools of a project funded and others not (or not listed).
        pools = st.tuples(st.sampled_from(SITES), st.sampled_from(TYPES))
        balances = {
            "pa": draw(st.dictionaries(pools, st.floats(-10.0, 1e5), max_size=3)),
            "pb": draw(st.dictionaries(pools, st.floats(-10.0, 1e6), max_size=4)),
        }
    return World(cluster, running, pending, drained, quotas, balances, now)


def check(world: World, policy: str) -> None:
    snapshot, queue = world.build()
    state = snapshot.state
    before = (state.free_total, dict(state.running), [j.id for j in queue])
    config = SchedulerConfig(policy=policy)
    d = decide(snapshot, queue, world.now, config)
    assert d == decide(snapshot, queue, world.now, config), "same inputs, same decision"
    assert before == (state.free_total, dict(state.running), [j.id for j in queue])
    check_decision(world, snapshot, queue, d, policy)


def check_decision(
    world: World, snapshot: Snapshot, queue: PendingQueue, d: Decision, policy: str
) -> None:
    state = snapshot.state
    nodes = state.cluster.by_name
    seen: set[tuple[str, int]] = set()
    ids = [s.job_id for s in d.starts]
    assert len(ids) == len(set(ids))
    for s in d.starts:
        j = queue.get(s.job_id)
        assert s.job_id not in d.waiting and s.job_id not in d.rejected
        assert s.placement.gpu_count == j.total_gpus, "gangs are all-or-nothing"
        assert s.gpu_type in j.gpu_types
        assert j.sites is None or s.site in j.sites
        for sl in s.placement.slices:
            node = nodes[sl.node]
            assert len(sl.gpus) % j.gpus_per_task == 0, "a task never spans nodes"
            assert node.gpu_type == s.gpu_type and node.site == s.site
            assert state.is_available(sl.node)
            assert set(sl.gpus) <= set(state.free_indices(sl.node)), "only free GPUs"
            for g in sl.gpus:
                assert (sl.node, g) not in seen, "no GPU twice"
                seen.add((sl.node, g))
    victims = [p.job_id for p in d.preemptions]
    assert len(victims) == len(set(victims))
    if victims:
        assert POLICIES[policy].preemptive
    for v in victims:
        assert v in state.running and state.running[v].preempt_deadline is None
    for job_id, w in d.rejected.items():
        assert w.code in (WaitCode.TOO_LARGE, WaitCode.NO_ELIGIBLE_SITE)
        assert job_id in queue
    # Allocation balances: a project starts jobs only in a pool where its balance, less
    # the jobs it started there earlier in the pass, is above zero (claims commit too,
    # so this is a bound); one spent everywhere by its starts alone is named spent.
    committed: dict[tuple[str, str, str], float] = {}
    for s in d.starts:
        j = queue.get(s.job_id)
        pools = (world.balances or {}).get(j.project)
        if pools is not None:
            key = (j.project, s.site, s.gpu_type)
            left = pools.get((s.site, s.gpu_type), 0.0) - committed.get(key, 0.0)
            assert left > 0, "a job starts only where its project has time left"
            committed[key] = committed.get(key, 0.0) + j.total_gpus * j.time_limit
    queued = {j.project for j in queue}
    for project, pools in (world.balances or {}).items():
        if project in queued and all(
            v - committed.get((project, *pool), 0.0) <= 0 for pool, v in pools.items()
        ):
            assert d.spent[project].code is WaitCode.ALLOCATION_EXHAUSTED
    assert set(d.spent) <= queued
    if world.balances is None:
        assert not d.spent
    # A driver can apply it: every start is accepted by the state.
    for s in d.starts:
        j = queue.get(s.job_id)
        state.allocate(RunningJob(j, s.placement, s.gpu_type, world.now, world.now + j.time_limit))
    for v in victims:
        state.mark_preempting(v, world.now + 60)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(worlds())
def test_fifo_invariants(world: World) -> None:
    check(world, "fifo")


@SETTINGS
@given(worlds())
def test_fifo_backfill_invariants(world: World) -> None:
    check(world, "fifo-backfill")


@SETTINGS
@given(worlds())
def test_las_invariants(world: World) -> None:
    check(world, "las")


@SETTINGS
@given(worlds())
def test_srtf_oracle_invariants(world: World) -> None:
    check(world, "srtf-oracle")


@SETTINGS
@given(worlds())
def test_masnaa_invariants(world: World) -> None:
    check(world, "masnaa")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.sampled_from(sorted(POLICIES)))
def test_chained_passes_keep_invariants(world: World, policy: str) -> None:
    """Apply a decision the way a driver does, then decide again on the new state."""
    snapshot, queue = world.build()
    config = SchedulerConfig(policy=policy)
    now = world.now
    for _ in range(3):
        d = decide(snapshot, queue, now, config)
        check_decision(world, snapshot, queue, d, policy)  # also allocates the starts
        for s in d.starts:
            queue.remove(s.job_id)
        for job_id in d.rejected:
            queue.remove(job_id)
        # Preempted jobs leave after their grace: release and requeue them.
        now += 200.0
        for p in d.preemptions:
            r = snapshot.state.release(p.job_id)
            queue.add(
                r.job, r.attained_service + r.job.total_gpus * (now - r.start_time), since=now
            )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.sampled_from(sorted(POLICIES)))
def test_explanations_never_change_what_a_pass_does(world: World, policy: str) -> None:
    """Without estimates and wait reasons (the twin's settings) a pass starts, preempts,
    reserves and rejects exactly what it does with them; only a reservation that no
    later start had to respect may be left unworked (``core.settle``)."""
    snapshot, queue = world.build()
    full = decide(snapshot, queue, world.now, SchedulerConfig(policy=policy, review_times=True))
    quiet = decide(
        snapshot, queue, world.now,
        SchedulerConfig(policy=policy, estimate_depth=0, explain_waits=False, review_times=True),
    )
    assert quiet.review_at == full.review_at  # when the twin looks again
    assert quiet.starts == full.starts
    assert quiet.preemptions == full.preemptions
    if quiet.reservations or any(s.backfilled for s in full.starts):
        assert quiet.reservations == full.reservations
    else:
        assert not full.reservations or not POLICIES[policy].preemptive
    assert quiet.rejected == full.rejected
    assert set(quiet.waiting) <= set(full.waiting)
