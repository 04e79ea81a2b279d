"""Gauges read from the database at scrape time, added to the process's registry.

- ``masnaa_queue_depth{tenant,gpu_type}``: pending jobs, by tenant and by
  their first (preferred) GPU type;
- ``masnaa_gpus{state}``: ``allocated`` (held by admitted or running jobs),
  ``idle`` (on up nodes, not allocated) and ``unavailable`` (drained or down).

Reading at scrape time keeps them right whichever process (API worker or
control loop) changed the rows. Counters and the pass histogram live in
``masnaa.service.metrics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from masnaa.store import models as m


class DatabaseCollector(Collector):
    def __init__(self, reader: sessionmaker[Session]) -> None:
        self.reader = reader

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected lazily: nothing to describe before the first scrape

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "masnaa_queue_depth", "Pending jobs by tenant and preferred GPU type.",
            labels=["tenant", "gpu_type"],
        )
        gpus = GaugeMetricFamily("masnaa_gpus", "GPUs of the factory by state.", labels=["state"])
        with self.reader() as session, session.begin():
            tenants = dict(session.execute(select(m.Tenant.id, m.Tenant.name)).all())
            counts: Counter[tuple[str, str]] = Counter()
            for tenant_id, gpu_types in session.execute(
                select(m.Job.tenant_id, m.Job.gpu_types).where(
                    m.Job.state == m.JobState.PENDING.value
                )
            ):
                first = gpu_types[0] if gpu_types else "any"
                counts[(tenants.get(tenant_id, "?"), first)] += 1
            for (tenant, gpu_type), n in sorted(counts.items()):
                depth.add_metric([tenant, gpu_type], n)
            allocated = 0
            for tasks, gpt in session.execute(
                select(m.Job.tasks, m.Job.gpus_per_task).where(
                    m.Job.state.in_([m.JobState.ADMITTED.value, m.JobState.RUNNING.value])
                )
            ):
                allocated += tasks * gpt
            up = session.scalar(
                select(func.coalesce(func.sum(m.Node.gpu_count), 0)).where(
                    m.Node.state == m.NodeState.UP.value
                )
            )
            down = session.scalar(
                select(func.coalesce(func.sum(m.Node.gpu_count), 0)).where(
                    m.Node.state != m.NodeState.UP.value
                )
            )
        gpus.add_metric(["allocated"], allocated)
        gpus.add_metric(["idle"], max(0, int(up or 0) - allocated))
        gpus.add_metric(["unavailable"], int(down or 0))
        yield depth
        yield gpus
