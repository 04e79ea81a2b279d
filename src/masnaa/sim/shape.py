"""The replayed factory: cluster size, load factor, tenants and their entitlement.

Terms:
- **offered GPU-seconds**: Σ over jobs of GPUs × work (runtime, cut at the
  requested limit where there is one);
- **span**: seconds from the first submission to the last;
- **load factor** = offered GPU-seconds ÷ (cluster GPUs × span). Traces are
  bursty, so busy stretches run hotter than this mean;
- **entitled share** of a tenant = its offered GPU-seconds ÷ all offered
  GPU-seconds (a tenant is entitled to the fraction of the factory its demand
  is of the whole). Its quota at each (site, GPU type) pool is that fraction of
  the pool, rounded down, with unlimited borrowing of idle GPUs;
- **served** jobs: those the built cluster can hold at all (``fit``). A job larger
  than every pool it may use is rejected at arrival (``too-large``) and counted, and
  it is no part of the workload the cluster serves: entitlement, quotas, the load
  factor and the peak demand are over the served jobs only (``served``), so one
  impossible job cannot raise its tenant's quota or the load a report shows.

The cluster is whole nodes of ``gpus_per_node`` GPUs (``Cluster.uniform``:
NVLink domain = one node, 32 nodes per leaf switch). A trace naming GPU types
gets one pool per type, sized by that type's share of the offered work (every
type at least one node, so a cluster asked smaller than its types are many is
larger than asked; reports give the size built); a trace naming sites gets its
nodes split evenly over those sites. A pool is then grown where a job that fits the
cluster asked for would fit none of the pools it may use (``_fit_largest_jobs``), so
no job is rejected for how the nodes were split, only for the cluster's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from masnaa.domain import Cluster, Quota, Tenant
from masnaa.sim.errors import SimError
from masnaa.sim.fit import Pools
from masnaa.sim.trace import Trace, job_shape

DEFAULT_GPU_TYPE = "h100-sxm-80gb"
MAX_GPUS = 100_000
"""The largest cluster the twin builds: ten times the 10,000-GPU factory it is made and
measured for, about the largest single GPU clusters built today. Every node is an
object with its own bookkeeping: 100,000 GPUs build in a fraction of a second, while
1,000,000 took 4 s and 2.3 GB before the first event (over the twin's 2 GB target),
and a mistyped 99,999,999,999 would never finish building."""


@dataclass(frozen=True, slots=True)
class Sizing:
    """The size asked of ``build_cluster``. Its load factor is the built cluster's
    (``load_factor``), which several GPU types can make larger than asked."""

    nodes: int
    gpus: int


def served(trace: Trace, cluster: Cluster, gpus_per_node: int = 8) -> Trace:
    """The jobs of ``trace`` that fit ``cluster`` (``fit.Pools``, the engine's own rule),
    rebased to the first of them; ``trace`` itself when every job fits."""
    pools = Pools(cluster)
    all_types = tuple(t.name for t in cluster.gpu_types)
    shapes: dict[tuple[int, int, int, tuple[str, ...] | None], bool] = {}
    keep = np.ones(len(trace), dtype=bool)
    row_sites = trace.sites or [None] * len(trace)
    for k, (gpus, tasks, ti, sites) in enumerate(zip(
        trace.gpus.tolist(), trace.tasks.tolist(), trace.gpu_type.tolist(), row_sites,
        strict=True,
    )):
        key = (gpus, tasks, ti, sites)
        fits = shapes.get(key)
        if fits is None:
            n, per = job_shape(gpus, tasks, gpus_per_node)
            types = (trace.gpu_types[ti],) if ti >= 0 else all_types
            fits = shapes[key] = pools.fits(n * per, per, types, sites)
        keep[k] = fits
    return trace if keep.all() else trace.take(np.nonzero(keep)[0])


def load_factor(trace: Trace, gpus: int) -> float:
    """Offered GPU-seconds ÷ (``gpus`` × span); give it the ``served`` jobs."""
    span = trace.span
    return trace.offered_gpu_seconds() / (gpus * span) if span > 0 and gpus > 0 else math.inf


def size_for(
    trace: Trace, *, load: float | None = None, gpus: int | None = None, gpus_per_node: int = 8
) -> Sizing:
    """Whole nodes for a target mean ``load``, or for a fixed number of ``gpus`` (rounded up).

    Sized for a load, the cluster is never smaller than the trace's largest job: one
    that rejects jobs as too large would measure its sizing, not the policies (a
    synthetic trace's gangs reach the cluster it was made for, and a draw that offers
    a little less than its target load would otherwise lose its largest). The load
    factor then comes out below the one asked, and the report says which it is."""
    if (load is None) == (gpus is None):
        raise SimError("bad-option", "give exactly one of --load or --gpus")
    if gpus is not None:
        check_gpus("--gpus", gpus)
        nodes = math.ceil(gpus / gpus_per_node)
    else:
        assert load is not None
        check_load(load)
        if trace.span <= 0:
            raise SimError(
                "bad-option", "--load needs a trace spanning more than one instant; use --gpus"
            )
        nodes = max(1, round(trace.offered_gpu_seconds() / (load * trace.span * gpus_per_node)))
        if len(trace):
            nodes = max(nodes, math.ceil(int(trace.gpus.max()) / gpus_per_node))
    total = nodes * gpus_per_node
    if total > MAX_GPUS:
        raise SimError(
            "bad-option", f"a mean load of {load:g} needs {total:,} GPUs, more than the "
            f"{MAX_GPUS:,} the twin builds; give a higher --load or a slice of the trace",
        )
    return Sizing(nodes=nodes, gpus=total)


def check_gpus(option: str, gpus: int) -> None:
    """A cluster size in GPUs the twin can build: ``SimError`` ``bad-option`` unless
    1 ≤ ``gpus`` ≤ ``MAX_GPUS``."""
    if not 0 < gpus <= MAX_GPUS:
        raise SimError("bad-option", f"{option} must be a positive number of GPUs of at most "
                       f"{MAX_GPUS:,} (the largest cluster the twin builds), got {gpus:,}")


def check_load(load: float) -> None:
    """A mean load factor: finite and > 0 (``inf`` would size the smallest cluster)."""
    if not 0 < load < math.inf:
        raise SimError("bad-option", f"--load must be a finite number > 0, got {load}")


def build_cluster(trace: Trace, nodes: int, *, gpus_per_node: int = 8) -> Cluster:
    """The cluster the trace is replayed on (see the module docstring)."""
    types = list(trace.gpu_types) or [DEFAULT_GPU_TYPE]
    sites = sorted({s for row in trace.sites or () if row for s in row}) or ["site-1"]
    work = trace.work() * trace.gpus
    typed = np.bincount(trace.gpu_type[trace.gpu_type >= 0],
                        weights=work[trace.gpu_type >= 0], minlength=len(types))
    weights = typed / typed.sum() if len(types) > 1 and typed.sum() > 0 else np.ones(len(types))
    per_type = apportion(nodes, [float(w) for w in weights / weights.sum()])
    counts = {
        (ti, site): per_type[ti] // len(sites) + (1 if si < per_type[ti] % len(sites) else 0)
        for ti in range(len(types))
        for si, site in enumerate(sites)
    }
    if len(counts) > 1:
        _fit_largest_jobs(trace, counts, nodes, gpus_per_node, len(types), sites)
    parts = []
    for (ti, site), n in counts.items():
        if n == 0:
            continue
        gpu_type = types[ti]
        prefix = f"{site}-{gpu_type}-" if len(types) > 1 or len(sites) > 1 else "n"
        parts.append(Cluster.uniform(n, gpus_per_node=gpus_per_node, gpu_type=gpu_type,
                                     site=site, name_prefix=prefix))
    if len(parts) == 1:
        return parts[0]
    merged = Cluster.merge(parts)
    unique_sites = {s.name: s for s in merged.sites}
    return Cluster(sites=tuple(unique_sites.values()), gpu_types=merged.gpu_types,
                   nodes=merged.nodes)


def _fit_largest_jobs(
    trace: Trace, counts: dict[tuple[int, str], int], nodes: int, gpus_per_node: int,
    types: int, sites: list[str],
) -> None:
    """Grow pools so that every job that fits ``nodes`` whole nodes fits one of the pools
    it may use (a gang runs on one GPU type at one site).

    Split by work, a GPU type that few jobs ask for gets a node or two, and its largest
    job would be rejected for the split's sake, not for the cluster's size. Each such
    job's need goes, largest first, to the pool among its choices that is largest
    already, so the cluster grows by as little as this greedy finds."""
    needs: dict[tuple[tuple[int, str], ...], int] = {}
    all_types = tuple(range(types))
    row_sites = trace.sites or [None] * len(trace)
    for gpus, tasks, ti, allowed in zip(trace.gpus.tolist(), trace.tasks.tolist(),
                                        trace.gpu_type.tolist(), row_sites, strict=True):
        n, per = job_shape(int(gpus), int(tasks), gpus_per_node)
        need = math.ceil(n / (gpus_per_node // per)) if per <= gpus_per_node else nodes + 1
        if need > nodes:
            continue  # larger than the cluster asked for: rejected, as it should be
        choices = tuple(
            (t, site)
            for t in ((ti,) if ti >= 0 else all_types)
            for site in (allowed if allowed else sites)
            if (t, site) in counts
        )
        if choices and need > needs.get(choices, 0):
            needs[choices] = need
    for choices, need in sorted(needs.items(), key=lambda kv: -kv[1]):
        best = max(choices, key=lambda c: counts[c])
        if counts[best] < need:
            counts[best] = need


def apportion(nodes: int, weights: list[float]) -> list[int]:
    """``nodes`` split over pools in proportion to ``weights`` (largest remainders), at
    least one each: a job that asks for a GPU type needs a node of it. The parts sum to
    ``nodes`` whenever there are at least as many nodes as pools; with fewer, every
    pool still gets its one node, and the cluster is larger than asked."""
    if nodes <= len(weights):
        return [1] * len(weights)
    rest = nodes - len(weights)
    exact = [rest * w for w in weights]
    parts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (parts[i] - exact[i], i))
    for i in by_remainder[: rest - sum(parts)]:
        parts[i] += 1
    return [1 + p for p in parts]


def entitlement(trace: Trace) -> dict[str, float]:
    """Each tenant's entitled share: its fraction of the offered GPU-seconds."""
    per = trace.tenant_gpu_seconds()
    total = float(per.sum())
    return {t: float(per[i]) / total if total > 0 else 1.0 / len(trace.tenants)
            for i, t in enumerate(trace.tenants)}


def tenancy(
    trace: Trace, cluster: Cluster, gpus_per_node: int = 8,
) -> tuple[tuple[Tenant, ...], tuple[Quota, ...]]:
    """Tenants weighted by entitled share over the jobs ``cluster`` serves (a tenant all
    of whose jobs are too large has share 0), and a quota per tenant × pool."""
    shares = entitlement(served(trace, cluster, gpus_per_node))
    tenants = tuple(Tenant(name, share=share) for name, share in shares.items())
    pools: dict[tuple[str, str], int] = {}
    for node in cluster.nodes:
        key = (node.site, node.gpu_type)
        pools[key] = pools.get(key, 0) + node.gpu_count
    quotas = tuple(
        Quota(tenant=t.name, site=site, gpu_type=gpu_type,
              nominal=math.floor(t.share * capacity), borrowing_limit=None)
        for t in tenants
        for (site, gpu_type), capacity in sorted(pools.items())
    )
    return tenants, quotas
