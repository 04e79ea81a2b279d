"""Fluent builders so a scheduler test reads as a story.

scene = Scene(nodes=4).running(job("r1").gpus(8), on="n0000")
scene.pending(job("a").gpus(8).tenant("t1").limit(3600))
decision = scene.decide("fifo-backfill", now=100)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from masnaa.domain import Cluster, Job, Placement, PlacementSlice, Quota, RunningJob, Tenant
from masnaa.scheduler import (
    ClusterState,
    Decision,
    PendingQueue,
    SchedulerConfig,
    Snapshot,
    UsageLedger,
    decide,
)

GPU = "h100-sxm-80gb"
SITE = "site-1"
"""The site of ``Cluster.uniform``, the scenes' default cluster."""


def home(seconds: float) -> dict[tuple[str, str], float]:
    """A project's balances with ``seconds`` left in the default pool (``SITE``, ``GPU``)."""
    return {(SITE, GPU): seconds}


@dataclass
class JobBuilder:
    _id: str
    _tenant: str = "t1"
    _project: str | None = None
    _tasks: int = 1
    _gpt: int = 1
    _types: tuple[str, ...] = (GPU,)
    _limit: float = 3600.0
    _class: str = "normal"
    _submit: float = 0.0
    _sites: tuple[str, ...] | None = None

    def gpus(self, n: int) -> JobBuilder:
        """One task of ``n`` GPUs."""
        self._tasks, self._gpt = 1, n
        return self

    def gang(self, tasks: int, gpus_per_task: int) -> JobBuilder:
        self._tasks, self._gpt = tasks, gpus_per_task
        return self

    def tenant(self, name: str) -> JobBuilder:
        self._tenant = name
        return self

    def project(self, name: str) -> JobBuilder:
        self._project = name
        return self

    def types(self, *names: str) -> JobBuilder:
        self._types = names
        return self

    def limit(self, seconds: float) -> JobBuilder:
        self._limit = seconds
        return self

    def priority(self, name: str) -> JobBuilder:
        self._class = name
        return self

    def submitted(self, t: float) -> JobBuilder:
        self._submit = t
        return self

    def sites(self, *names: str) -> JobBuilder:
        self._sites = names
        return self

    def build(self) -> Job:
        return Job(
            id=self._id,
            tenant=self._tenant,
            project=self._project or f"{self._tenant}-p",
            tasks=self._tasks,
            gpus_per_task=self._gpt,
            gpu_types=self._types,
            time_limit=self._limit,
            priority_class=self._class,
            submit_time=self._submit,
            sites=self._sites,
        )


def job(job_id: str) -> JobBuilder:
    return JobBuilder(job_id)


def on(node: str, *gpus: int) -> PlacementSlice:
    return PlacementSlice(node, gpus)


@dataclass
class Scene:
    """A cluster, its running jobs, a pending queue and a usage ledger."""

    nodes: int = 4
    gpus_per_node: int = 8
    nodes_per_leaf: int = 32
    nodes_per_nvlink: int = 1
    cluster: Cluster | None = None
    tenants: dict[str, Tenant] = field(default_factory=dict)
    quotas: list[Quota] = field(default_factory=list)
    balances: dict[str, dict[tuple[str, str], float]] | None = None
    oracle: Mapping[str, float] | None = None
    half_life: float = 7 * 86400.0
    reserved_for: str | None = None

    def __post_init__(self) -> None:
        if self.cluster is None:
            self.cluster = Cluster.uniform(
                self.nodes,
                gpus_per_node=self.gpus_per_node,
                gpu_type=GPU,
                nodes_per_leaf=self.nodes_per_leaf,
                nodes_per_nvlink=self.nodes_per_nvlink,
            )
        self.state = ClusterState(self.cluster)
        self.queue = PendingQueue()
        self.usage = UsageLedger(self.half_life)

    def running(
        self,
        builder: JobBuilder,
        *slices: PlacementSlice | str,
        start: float = 0.0,
        end: float | None = None,
        attained: float = 0.0,
        gpu_type: str = GPU,
        checkpoint_every: float | None = None,
        requeues: int = 0,
    ) -> Scene:
        """A running job; a bare node name places it on that node's lowest free GPUs."""
        j = builder.build()
        placed: list[PlacementSlice] = []
        for s in slices:
            if isinstance(s, str):
                free = self.state.free_indices(s)
                placed.append(PlacementSlice(s, free[: j.total_gpus // len(slices)]))
            else:
                placed.append(s)
        r = RunningJob(
            j,
            Placement(tuple(placed)),
            gpu_type,
            start,
            start + j.time_limit if end is None else end,
            attained_service=attained,
            checkpoint_every=checkpoint_every,
            requeues=requeues,
        )
        self.state.allocate(r)
        self.usage.start(j.id, j.tenant, j.total_gpus, start)
        return self

    def pending(self, *builders: JobBuilder, attained: float = 0.0) -> Scene:
        for b in builders:
            self.queue.add(b.build(), attained)
        return self

    def tenant(self, name: str, share: float = 1.0) -> Scene:
        self.tenants[name] = Tenant(name, share=share)
        return self

    def quota(self, tenant: str, nominal: int, **kw: int | None) -> Scene:
        site = self.cluster.sites[0].name if self.cluster else "site-1"
        self.quotas.append(Quota(tenant, site, GPU, nominal, **kw))  # type: ignore[arg-type]
        return self

    def snapshot(self) -> Snapshot:
        return Snapshot(
            state=self.state,
            usage=self.usage,
            tenants=dict(self.tenants),
            quotas=tuple(self.quotas),
            balances=self.balances,
            oracle=self.oracle,
            reserved_for=self.reserved_for,
        )

    def decide(self, policy: str = "masnaa", now: float = 0.0, **knobs: object) -> Decision:
        return decide(self.snapshot(), self.queue, now, SchedulerConfig(policy=policy, **knobs))  # type: ignore[arg-type]

    def apply(self, decision: Decision, now: float) -> None:
        """Apply starts the way a driver does (used to chain passes)."""
        for s in decision.starts:
            j = self.queue.remove(s.job_id)
            self.state.allocate(RunningJob(j, s.placement, s.gpu_type, now, now + j.time_limit))
            self.usage.start(j.id, j.tenant, j.total_gpus, now)
        for p in decision.preemptions:
            self.state.mark_preempting(p.job_id, now + p.grace_seconds)


def started(decision: Decision) -> list[str]:
    return [s.job_id for s in decision.starts]


def nodes_of(decision: Decision, job_id: str) -> tuple[str, ...]:
    for s in decision.starts:
        if s.job_id == job_id:
            return s.placement.nodes
    raise AssertionError(f"{job_id} did not start")


def with_sites(*sites: tuple[str, int]) -> Cluster:
    """A factory of several one-type sites: ``("ma-1", 4), ("za-1", 2)`` nodes each."""
    return Cluster.merge(
        Cluster.uniform(n, site=name, name_prefix=f"{name}-", gpu_type=GPU) for name, n in sites
    )


def mixed_types(h100_nodes: int, l40s_nodes: int) -> Cluster:
    a = Cluster.uniform(h100_nodes, gpu_type=GPU, name_prefix="h")
    b = Cluster.uniform(l40s_nodes, gpu_type="l40s", name_prefix="l")
    merged = Cluster.merge([a, b])
    return replace(merged, sites=merged.sites[:1])
