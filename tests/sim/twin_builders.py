"""Builders for twin tests: tiny traces and one-call replays."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from masnaa.domain import Cluster
from masnaa.sim.engine import Engine
from masnaa.sim.records import EngineConfig, RunResult
from masnaa.sim.shape import tenancy
from masnaa.sim.trace import Trace, TraceBuilder


def trace(*rows: tuple[Any, ...], name: str = "t") -> Trace:
    """Rows of ``(submit, runtime, gpus, tenant[, time_limit])``; job ids are row numbers."""
    b = TraceBuilder(name)
    for k, row in enumerate(rows):
        submit, runtime, gpus, tenant = row[:4]
        limit = row[4] if len(row) > 4 else None
        b.add(submit=submit, runtime=runtime, gpus=gpus, tenant=tenant, time_limit=limit,
              job_id=f"r{k}")
    return b.build()


def replay(t: Trace, *, nodes: int = 1, policy: str = "fifo", **cfg: Any) -> Engine:
    cluster = Cluster.uniform(nodes)
    tenants, quotas = tenancy(t, cluster)
    engine = Engine(t, cluster, tenants, quotas, EngineConfig(policy=policy, **cfg))
    engine.run()
    return engine


def run(t: Trace, **kw: Any) -> RunResult:
    cluster = Cluster.uniform(kw.pop("nodes", 1))
    tenants, quotas = tenancy(t, cluster)
    return Engine(t, cluster, tenants, quotas, EngineConfig(**kw)).run()


def jcts(r: RunResult) -> list[float]:
    return [r.end[i] - r.submit[i] for i in range(r.jobs)]


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail the test if the block (a replay) has not ended within ``seconds``."""
    def hung(*_: object) -> None:
        raise AssertionError(f"the replay did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
