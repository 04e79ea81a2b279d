"""Time one ``decide()`` pass at factory scale.

Scene (seeded): 10,000 GPUs (1,250 nodes × 8, leaf switches of 32 nodes),
5,000 running jobs filling ~95 % of the GPUs, 100,000 pending jobs of 60
tenants in three priority classes, gangs from 1 GPU to 16 nodes. Each policy
runs ``--passes`` passes on the same state (``decide`` never mutates it), with
``now`` advancing 10 s per pass; the masnaa policy runs once more with
allocation balances enabled to show what the admission check costs.

Target (issue 2): p99 ≤ 50 ms for one pass.

    .venv/bin/python benchmarks/bench_decide.py [--passes 50] [--policies masnaa,las]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

from masnaa.domain import Cluster, Job, Placement, PlacementSlice, RunningJob, Tenant
from masnaa.scheduler import (
    ClusterState,
    PendingQueue,
    SchedulerConfig,
    Snapshot,
    UsageLedger,
    decide,
)

GPU = "h100-sxm-80gb"
CLOCK = "wall"
SIZES = (
    [(1, 1)] * 40
    + [(1, 2)] * 15
    + [(1, 4)] * 15
    + [(1, 8)] * 20
    + [(2, 8)] * 6
    + [(4, 8)] * 3
    + [(16, 8)]
)


def build(seed: int) -> tuple[Snapshot, PendingQueue, dict[str, float]]:
    rng = random.Random(seed)
    cluster = Cluster.uniform(1250, gpus_per_node=8, gpu_type=GPU, nodes_per_leaf=32)
    state = ClusterState(cluster)
    usage = UsageLedger(half_life=7 * 86400)
    tenants = {
        f"t{i:02d}": Tenant(f"t{i:02d}", share=rng.choice([1.0, 2.0, 4.0])) for i in range(60)
    }
    names = list(tenants)
    now = 1_000_000.0
    for t in names:
        usage.charge(t, rng.uniform(0, 5e6), now - 86400)
    # Running: pack single-node jobs node by node until 5,000 jobs hold ~95 % of the GPUs.
    free = [8] * 1250
    node_i = 0
    jid = 0
    while jid < 5000 and node_i < 1250:
        size = rng.choice([1, 1, 1, 2, 2, 2, 4])
        if free[node_i] < size:
            node_i += 1
            continue
        first = 8 - free[node_i]
        gpus = tuple(range(first, first + size))
        free[node_i] -= size
        tenant = rng.choice(names)
        job = Job(
            f"r{jid}", tenant, f"{tenant}-p", 1, size, (GPU,), 4 * 3600, submit_time=now - 7200
        )
        start = now - rng.uniform(0, 3600 * 3)
        placement = Placement((PlacementSlice(cluster.nodes[node_i].name, gpus),))
        state.allocate(RunningJob(job, placement, GPU, start, start + rng.uniform(3600, 6 * 3600)))
        usage.start(job.id, tenant, size, start)
        jid += 1
    pending = PendingQueue()
    classes = ["low", "normal", "normal", "normal", "high"]
    for k in range(100_000):
        tasks, gpt = rng.choice(SIZES)
        tenant = rng.choice(names)
        job = Job(
            f"p{k}",
            tenant,
            f"{tenant}-p",
            tasks,
            gpt,
            (GPU,),
            rng.choice([600.0, 3600.0, 4 * 3600.0, 24 * 3600.0]),
            priority_class=rng.choice(classes),
            submit_time=now - 50_000 + k * 0.5,
        )
        pending.add(job, attained_service=rng.choice([0.0] * 8 + [5000.0, 50_000.0]))
    balances = {f"{t}-p": {("site-1", GPU): rng.uniform(-1e5, 1e7)} for t in names}
    snapshot = Snapshot(state=state, usage=usage, tenants=tenants)
    return snapshot, pending, balances


def measure(
    snapshot: Snapshot, pending: PendingQueue, config: SchedulerConfig, passes: int
) -> list[float]:
    """Milliseconds per pass: CPU time of this process (``--clock cpu``) or wall time."""
    now = 1_000_000.0
    times = []
    clock = time.process_time if CLOCK == "cpu" else time.perf_counter
    for i in range(passes):
        t0 = clock()
        decide(snapshot, pending, now + 10 * i, config)
        times.append((clock() - t0) * 1000)
    return times


def report(label: str, times: list[float]) -> None:
    times = sorted(times)
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    print(
        f"{label:<28} p50 {statistics.median(times):7.2f} ms   p99 {p99:7.2f} ms   "
        f"max {times[-1]:7.2f} ms   ({len(times)} passes)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--policies", default="masnaa,fifo-backfill,las,fifo")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, steadier on a machine shared with other work",
    )
    args = ap.parse_args()
    global CLOCK
    CLOCK = args.clock
    print(f"clock: {CLOCK}")
    t0 = time.perf_counter()
    snapshot, pending, balances = build(args.seed)
    # A long-lived driver holds ~10^6 objects; freezing them keeps the cyclic GC from
    # re-scanning them during passes (the twin and the service do the same).
    gc.collect()
    gc.freeze()
    print(
        f"scene: {snapshot.state.cluster.total_gpus} GPUs, {len(snapshot.state.running)} running, "
        f"{len(pending)} pending, {snapshot.state.free_total} GPUs free "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    d = decide(snapshot, pending, 1_000_000.0, SchedulerConfig())
    print(
        f"masnaa pass: {len(d.starts)} starts, {len(d.preemptions)} preemptions, "
        f"{len(d.reservations)} reservations, {len(d.waiting)} explained waits"
    )
    for name in args.policies.split(","):
        report(name, measure(snapshot, pending, SchedulerConfig(policy=name), args.passes))
    import dataclasses

    with_bal = dataclasses.replace(snapshot, balances=balances)
    plain = measure(snapshot, pending, SchedulerConfig(), args.passes)
    funded = measure(with_bal, pending, SchedulerConfig(), args.passes)
    report("masnaa (again)", plain)
    report("masnaa + balances", funded)
    print(
        f"balance check overhead (p50 ratio): "
        f"{statistics.median(funded) / statistics.median(plain) - 1:+.1%}"
    )


if __name__ == "__main__":
    main()
