"""The runs of one comparison, in worker processes: one replay per core.

Each run of ``compare`` (a policy, on the plain trace or on a jittered copy) is a
fresh engine with its own state, so runs share nothing and may run in any order.
With N workers a comparison takes about as long as its slowest replays rather
than their sum: on whole Philly las alone takes longer than the other default
policies together (README), so they finish beside it. The reports are the
ones a single process gives, to the digit (``tests/sim/test_parallel.py``): a
replay is deterministic and reads only its own inputs.

Workers are started with ``spawn``, not ``fork``: the parent holds threads (the
progress bar redraws from one), and a child forked from a threaded process may
inherit a lock that no thread will release. Each worker receives the trace,
cluster size and configuration once, when it starts, and builds the cluster and
tenancy itself on its first run of each cluster size: the domain's frozen
classes, once compiled by mypyc, cannot be unpickled, and ``build_cluster`` and
``tenancy`` are deterministic. The setup travels as bytes and is read inside a run, so that
whatever fails there fails the run (a pool's initializer that raises would be
restarted without end). A run is then only its policy, label and jitter seed, and
for a capacity plan (``sim.plan``) the size of its cluster.
Progress comes back over a queue, as often as the engine reports it (every 2,048
event batches). A run that raises stops the comparison: the other workers are
terminated and the error is raised in the parent, as in one process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import queue as queue_module
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult
from typing import Any

from masnaa.domain import Cluster, Quota, Tenant
from masnaa.sim.engine import Engine
from masnaa.sim.metrics import summarize
from masnaa.sim.records import EngineConfig
from masnaa.sim.shape import build_cluster, tenancy
from masnaa.sim.trace import Trace

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Run:
    """One replay of a comparison: ``seed`` 0 is the plain trace, n a jittered copy;
    ``nodes``, where given, the cluster's size instead of the setup's (capacity plans)."""

    policy: str
    label: str
    seed: int = 0
    nodes: int | None = None


@dataclass(frozen=True, slots=True)
class Setup:
    """What every run of one comparison shares."""

    trace: Trace
    nodes: int
    config: EngineConfig
    jitter: float

    def world(self, nodes: int | None = None) -> World:
        """The cluster of ``nodes`` nodes (default: the setup's) and the trace's tenants
        and quotas on it."""
        size = self.nodes if nodes is None else nodes
        cluster = build_cluster(self.trace, size, gpus_per_node=self.config.gpus_per_node)
        tenants, quotas = tenancy(self.trace, cluster, self.config.gpus_per_node)
        return World(cluster, tenants, quotas)


@dataclass(frozen=True, slots=True)
class World:
    cluster: Cluster
    tenants: tuple[Tenant, ...]
    quotas: tuple[Quota, ...]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def replay(setup: Setup, world: World, run: Run, trace: Trace | None = None,
           progress: Progress | None = None) -> dict[str, Any]:
    """One run's summary; ``trace``: the run's trace when the caller already made it."""
    if trace is None:
        trace = setup.trace if run.seed == 0 else setup.trace.jittered(run.seed, setup.jitter)
    engine = Engine(
        trace, world.cluster, world.tenants, world.quotas,
        dataclasses.replace(setup.config, policy=run.policy), progress=progress,
    )
    return summarize(engine.run())


def run_parallel(
    setup: Setup,
    runs: Sequence[Run],
    workers: int,
    progress: Callable[[str], Progress] | None = None,
) -> list[dict[str, Any]]:
    """Every run's summary, in the order of ``runs``, from ``workers`` processes."""
    ctx = multiprocessing.get_context("spawn")
    updates: multiprocessing.Queue[tuple[str, int, int]] | None = (
        ctx.Queue() if progress is not None else None
    )
    bars = {run.label: progress(run.label) for run in runs} if progress is not None else {}
    pool = ctx.Pool(min(workers, len(runs)), _start_worker, (pickle.dumps(setup), updates))
    try:
        pending: list[AsyncResult[dict[str, Any]]] = [
            pool.apply_async(_run_in_worker, (run,)) for run in runs
        ]
        while True:
            for r in pending:
                if r.ready() and not r.successful():
                    r.get()  # raises the run's error here, at once
            waiting = [r for r in pending if not r.ready()]
            if not waiting:
                break
            if updates is None:
                waiting[0].wait(0.2)
            else:
                _drain(updates, bars, wait=0.2)
        results = [r.get() for r in pending]
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.close()
        pool.join()
    if updates is not None:
        # A worker's queue is written by a thread of its own: its last reports may
        # arrive after its result. A worker that has exited has sent them all.
        _drain(updates, bars, wait=0.0)
    return results


def _drain(
    updates: multiprocessing.Queue[tuple[str, int, int]], bars: dict[str, Progress], wait: float
) -> None:
    """Hand every progress report queued so far to its bar, waiting up to ``wait`` s for one."""
    try:
        label, done, total = updates.get(timeout=wait) if wait else updates.get_nowait()
        while True:
            bars[label](done, total)
            label, done, total = updates.get_nowait()
    except queue_module.Empty:
        pass


# The worker's side. Module globals, because a pool's initializer can hand its
# arguments to the tasks no other way; they live only in the worker processes.
_setup_bytes = b""
_updates: multiprocessing.Queue[tuple[str, int, int]] | None = None
_made: tuple[Setup, dict[int | None, World]] | None = None


def _start_worker(setup: bytes, updates: multiprocessing.Queue[tuple[str, int, int]] | None
                  ) -> None:
    global _setup_bytes, _updates
    _setup_bytes, _updates = setup, updates


def _run_in_worker(run: Run) -> dict[str, Any]:
    global _made
    if _made is None:
        _made = (pickle.loads(_setup_bytes), {})
    setup, worlds = _made
    world = worlds.get(run.nodes)
    if world is None:
        world = worlds[run.nodes] = setup.world(run.nodes)
    updates = _updates
    report: Progress | None = None
    if updates is not None:
        def report(done: int, total: int) -> None:
            updates.put((run.label, done, total))

        report(0, len(setup.trace))  # the run has begun: its bar's clock starts
    return replay(setup, world, run, progress=report)
