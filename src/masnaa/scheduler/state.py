"""``ClusterState``: the driver-owned, incremental index of who holds which GPU.

Owns: the free GPUs of every node, the running jobs, and the indexes the
scheduler needs to answer "where could this fit?" in O(1)-ish time instead of
scanning 1,250 nodes:

- a **pool** is the set of nodes of one GPU type at one site (a job never spans
  sites, and a node has one GPU type, so every placement lives in one pool);
- per pool, **buckets** of available nodes by their number of free GPUs, kept as
  bitmasks over node ordinals (bit *i* is ``cluster.nodes[i]``): the best-fit node
  for a task of *g* GPUs is the lowest set bit of the first non-empty bucket
  ``≥ g``; the number of wholly free nodes of a topology domain is one popcount;
- free GPU counts per pool, per GPU type and per site;
- running GPUs per tenant and per (tenant, pool), for quotas and fair share;
- running jobs sorted by their (effective) expected end: the release profile
  used for reservations and start estimates;
- running jobs per (tenant, priority class) in allocation order, and the jobs
  being preempted: victim search walks these instead of every running job.

Invariants (checked on every change, a violation raises ``ValueError`` and
leaves the state untouched):
- no GPU is ever held by two jobs; a job holds GPUs only of existing nodes, of
  the GPU type it was started on, and only on nodes that were available;
- a node marked unavailable (drained or down) is in no bucket, so nothing new is
  placed there; jobs already on it keep their GPUs until the driver releases them.

Terms: *free* counts only GPUs of available nodes unless a method says
otherwise (``free_gpus(node)`` is the node's own count, available or not).
The effective end of a job being preempted is ``min(expected_end, deadline)``.

Only the driver mutates a ``ClusterState``; ``decide()`` reads it (through a
copy-on-write overlay) and never changes it.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from masnaa.domain.cluster import Cluster
from masnaa.domain.job import PlacementSlice, RunningJob


@dataclass(frozen=True, slots=True)
class Pool:
    """Static shape of one (GPU type, site) pool.

    ``levels[i]`` lists the topology domains at level *i* (``Node.domains[i]``)
    as ``(name, member_mask, gpu_capacity)``, sorted by name; the last level is
    the site itself.
    """

    index: int
    gpu_type: str
    site: str
    members: tuple[int, ...]
    member_mask: int
    max_node_gpus: int
    capacity: int
    levels: tuple[tuple[tuple[str, int, int], ...], ...]
    level_max: tuple[int, ...]
    """Largest domain capacity (GPUs) per level: skip a level that cannot hold a gang."""
    slots: tuple[int, ...]
    """``slots[g]``: tasks of ``g`` GPUs the whole pool could hold at once (index 0 unused)."""


def effective_end(running: RunningJob) -> float:
    """When a running job's GPUs are expected back (its preemption deadline caps it)."""
    if running.preempt_deadline is not None:
        return min(running.expected_end, running.preempt_deadline)
    return running.expected_end


class ClusterState:
    """Incremental free-capacity index of one cluster (see the module docstring).

    Every method is O(GPUs touched) plus O(log running) for the release
    profile; none scans the cluster.
    """

    __slots__ = (
        "_avail",
        "_by_end",
        "_cluster",
        "_domain_mask",
        "_ends",
        "_free_mask",
        "_groups",
        "_held",
        "_node_gpus",
        "_node_pool",
        "_ord",
        "_pool_avail_cap",
        "_pool_buckets",
        "_pool_free",
        "_pools",
        "_pools_by_type",
        "_preempting",
        "_running",
        "_site_free",
        "_tenant_gpus",
        "_tenant_pool_gpus",
        "_type_free",
        "_version",
        "_whole",
    )

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        nodes = cluster.nodes
        self._ord: dict[str, int] = {n.name: i for i, n in enumerate(nodes)}
        self._node_gpus: list[int] = [n.gpu_count for n in nodes]
        # Whole-node slices are shared, not rebuilt: a 1,024-GPU gang places 128 of
        # them at every start and in every release walk that reserves for it.
        self._whole: list[PlacementSlice] = [
            PlacementSlice(n.name, tuple(range(n.gpu_count))) for n in nodes
        ]
        self._free_mask: list[int] = [(1 << n.gpu_count) - 1 for n in nodes]
        self._avail: list[bool] = [True] * len(nodes)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, n in enumerate(nodes):
            groups.setdefault((n.gpu_type, n.site), []).append(i)
        pools: list[Pool] = []
        self._node_pool: list[int] = [0] * len(nodes)
        self._domain_mask: dict[str, int] = {}
        for (gpu_type, site), members in sorted(groups.items()):
            depth = max(len(nodes[i].domains) for i in members)
            per_level: list[dict[str, list[int]]] = [{} for _ in range(depth)]
            for i in members:
                doms = nodes[i].domains
                for level in range(depth):
                    name = doms[min(level, len(doms) - 1)]
                    per_level[level].setdefault(name, []).append(i)
            levels = tuple(
                tuple(
                    (name, _mask(m), sum(self._node_gpus[i] for i in m))
                    for name, m in sorted(level.items())
                )
                for level in per_level
            )
            for i in members:
                self._node_pool[i] = len(pools)
            pools.append(
                Pool(
                    index=len(pools),
                    gpu_type=gpu_type,
                    site=site,
                    members=tuple(members),
                    member_mask=_mask(members),
                    max_node_gpus=max(self._node_gpus[i] for i in members),
                    capacity=sum(self._node_gpus[i] for i in members),
                    levels=levels,
                    level_max=tuple(max(c for _, _, c in lv) for lv in levels),
                    slots=tuple(
                        sum(self._node_gpus[i] // g for i in members) if g else 0
                        for g in range(max(self._node_gpus[i] for i in members) + 1)
                    ),
                )
            )
        for n_i, n in enumerate(nodes):
            for d in n.domains:
                self._domain_mask[d] = self._domain_mask.get(d, 0) | (1 << n_i)
        self._pools: tuple[Pool, ...] = tuple(pools)
        self._pools_by_type: dict[str, tuple[Pool, ...]] = {}
        for p in pools:
            self._pools_by_type[p.gpu_type] = (*self._pools_by_type.get(p.gpu_type, ()), p)
        self._pool_buckets: list[list[int]] = []
        self._pool_free: list[int] = []
        for p in pools:
            buckets = [0] * (p.max_node_gpus + 1)
            for i in p.members:
                buckets[self._node_gpus[i]] |= 1 << i
            self._pool_buckets.append(buckets)
            self._pool_free.append(p.capacity)
        self._pool_avail_cap: list[int] = [p.capacity for p in pools]
        self._type_free: dict[str, int] = {}
        self._site_free: dict[str, int] = {}
        for p in pools:
            self._type_free[p.gpu_type] = self._type_free.get(p.gpu_type, 0) + p.capacity
            self._site_free[p.site] = self._site_free.get(p.site, 0) + p.capacity
        for t in cluster.gpu_types:
            self._type_free.setdefault(t.name, 0)
        for s in cluster.sites:
            self._site_free.setdefault(s.name, 0)
        self._running: dict[str, RunningJob] = {}
        self._held: dict[str, tuple[tuple[int, int], ...]] = {}
        self._groups: dict[tuple[str, str], dict[str, None]] = {}
        self._preempting: dict[str, None] = {}
        self._ends: list[tuple[float, str]] = []
        self._by_end: dict[str, float] = {}
        self._tenant_gpus: dict[str, int] = {}
        self._tenant_pool_gpus: dict[tuple[str, int], int] = {}
        self._version = 0

    # ----------------------------------------------------------------- reading
    @property
    def cluster(self) -> Cluster:
        return self._cluster

    @property
    def version(self) -> int:
        """A counter that changes with every write (allocate, release, a preemption
        mark, a new expected end, a node's availability): equal versions of one state
        mean the same free GPUs, running jobs and release profile."""
        return self._version

    @property
    def running(self) -> Mapping[str, RunningJob]:
        """Running jobs by id (a read-only view; it follows later changes)."""
        return MappingProxyType(self._running)

    def free_gpus(self, node: str) -> int:
        """Free GPUs on ``node`` (counted even while the node is unavailable)."""
        return self._free_mask[self._node_ord(node)].bit_count()

    def free_indices(self, node: str) -> tuple[int, ...]:
        """The free GPU indices of ``node``, ascending."""
        return _bits(self._free_mask[self._node_ord(node)])

    def free_of_type(self, gpu_type: str) -> int:
        """Free GPUs of ``gpu_type`` on available nodes (0 for an unknown type)."""
        return self._type_free.get(gpu_type, 0)

    def free_in_site(self, site: str) -> int:
        """Free GPUs on available nodes of ``site`` (0 for an unknown site)."""
        return self._site_free.get(site, 0)

    def free_in_domain(self, domain: str) -> int:
        """Free GPUs on available nodes of a topology domain (a name from ``Node.domains``)."""
        mask = self._domain_mask.get(domain, 0)
        total = 0
        for p in self._pools:
            if mask & p.member_mask:
                for k, b in enumerate(self._pool_buckets[p.index]):
                    if k:
                        total += k * (b & mask).bit_count()
        return total

    @property
    def free_total(self) -> int:
        """Free GPUs on available nodes, all types."""
        return sum(self._pool_free)

    def is_available(self, node: str) -> bool:
        return self._avail[self._node_ord(node)]

    def tenant_gpus(self, tenant: str) -> int:
        """GPUs held by ``tenant``'s running jobs (including those being preempted)."""
        return self._tenant_gpus.get(tenant, 0)

    def tenant_gpus_in(self, tenant: str, gpu_type: str, site: str) -> int:
        """GPUs held by ``tenant`` of ``gpu_type`` at ``site``."""
        for p in self._pools_by_type.get(gpu_type, ()):
            if p.site == site:
                return self._tenant_pool_gpus.get((tenant, p.index), 0)
        return 0

    def running_groups(self) -> Mapping[tuple[str, str], Mapping[str, None]]:
        """Running job ids per (tenant, priority class), in allocation order (read-only)."""
        return MappingProxyType(self._groups)

    def release_profile(self) -> list[tuple[float, str]]:
        """``(effective end, job id)`` of every running job, earliest first."""
        return list(self._ends)

    # ----------------------------------------------------------------- writing
    def allocate(self, running: RunningJob) -> None:
        """Record that ``running`` holds the GPUs of its placement.

        Raises ``ValueError`` (and changes nothing) if the job id already runs,
        a node is unknown or unavailable, a GPU index is out of range or already
        held, a node is not of ``running.gpu_type``, a node appears twice, or the
        placement's size differs from the job's gang size.
        """
        job = running.job
        if job.id in self._running:
            raise ValueError(f"job {job.id!r} is already running; release it before allocating it")
        if running.placement.gpu_count != job.total_gpus:
            raise ValueError(
                f"job {job.id!r}: placement holds {running.placement.gpu_count} GPUs, "
                f"the gang needs {job.total_gpus}"
            )
        planned: list[tuple[int, int]] = []
        seen: set[int] = set()
        for s in running.placement.slices:
            i = self._ord.get(s.node)
            if i is None:
                raise ValueError(f"job {job.id!r}: unknown node {s.node!r}")
            if i in seen:
                raise ValueError(f"job {job.id!r}: node {s.node!r} appears twice in its placement")
            seen.add(i)
            if not self._avail[i]:
                raise ValueError(
                    f"job {job.id!r}: node {s.node!r} is unavailable (drained or down)"
                )
            node = self._cluster.nodes[i]
            if node.gpu_type != running.gpu_type:
                raise ValueError(
                    f"job {job.id!r}: node {s.node!r} has {node.gpu_type}, "
                    f"the job was started on {running.gpu_type}"
                )
            want = 0
            for g in s.gpus:
                if not 0 <= g < node.gpu_count:
                    raise ValueError(
                        f"job {job.id!r}: GPU index {g} out of range on {s.node!r} "
                        f"(0..{node.gpu_count - 1})"
                    )
                if want >> g & 1:
                    raise ValueError(f"job {job.id!r}: GPU {s.node}:{g} listed twice")
                want |= 1 << g
            if want & ~self._free_mask[i]:
                held = _bits(want & ~self._free_mask[i])
                raise ValueError(f"job {job.id!r}: GPUs {held} of {s.node!r} are already held")
            planned.append((i, want))
        self._version += 1
        for i, want in planned:
            self._set_free(i, self._free_mask[i] & ~want)
        self._held[job.id] = tuple(planned)
        self._running[job.id] = running
        self._groups.setdefault((job.tenant, job.priority_class), {})[job.id] = None
        if running.preempt_deadline is not None:
            self._preempting[job.id] = None
        self._add_end(job.id, effective_end(running))
        self._count_tenant(running, +1)

    def release(self, job_id: str) -> RunningJob:
        """Free the GPUs of a running job and return it. ``KeyError`` if it is not running."""
        running = self._running.pop(job_id, None)
        if running is None:
            raise KeyError(f"job {job_id!r} is not running")
        self._version += 1
        for i, mask in self._held.pop(job_id):
            self._set_free(i, self._free_mask[i] | mask)
        group_key = (running.job.tenant, running.job.priority_class)
        group = self._groups[group_key]
        del group[job_id]
        if not group:
            del self._groups[group_key]
        self._preempting.pop(job_id, None)
        self._drop_end(job_id)
        self._count_tenant(running, -1)
        return running

    def mark_preempting(self, job_id: str, deadline: float) -> None:
        """Record that a preemption was issued: the GPUs come back by ``deadline``.

        The scheduler never chooses a job being preempted as a victim again, and
        counts its GPUs as released at ``min(expected_end, deadline)``.
        """
        running = self._get(job_id)
        self._replace(running, dataclasses.replace(running, preempt_deadline=deadline))
        self._preempting[job_id] = None

    def update_expected_end(self, job_id: str, t: float) -> None:
        """Move a running job's expected end (the twin extends jobs that outrun it)."""
        running = self._get(job_id)
        self._replace(running, dataclasses.replace(running, expected_end=t))

    def set_node_available(self, node: str, available: bool) -> None:
        """Drain (``False``) or return (``True``) a node. Idempotent.

        An unavailable node takes no new placements and its free GPUs leave the
        free counts; running jobs on it stay until the driver releases them.
        """
        i = self._node_ord(node)
        if self._avail[i] == available:
            return
        self._version += 1
        mask = self._free_mask[i]
        p = self._node_pool[i]
        if available:
            self._avail[i] = True
            self._index_node(i, mask, +1)
            self._pool_avail_cap[p] += self._node_gpus[i]
        else:
            self._index_node(i, mask, -1)
            self._avail[i] = False
            self._pool_avail_cap[p] -= self._node_gpus[i]

    # --------------------------------------------------------------- internals
    def _node_ord(self, node: str) -> int:
        i = self._ord.get(node)
        if i is None:
            raise KeyError(f"unknown node {node!r}")
        return i

    def _get(self, job_id: str) -> RunningJob:
        running = self._running.get(job_id)
        if running is None:
            raise KeyError(f"job {job_id!r} is not running")
        return running

    def _replace(self, old: RunningJob, new: RunningJob) -> None:
        self._version += 1
        self._drop_end(old.job.id)
        self._running[old.job.id] = new
        self._add_end(new.job.id, effective_end(new))

    def _add_end(self, job_id: str, end: float) -> None:
        bisect.insort(self._ends, (end, job_id))
        self._by_end[job_id] = end

    def _drop_end(self, job_id: str) -> None:
        end = self._by_end.pop(job_id)
        k = bisect.bisect_left(self._ends, (end, job_id))
        del self._ends[k]

    def _count_tenant(self, running: RunningJob, sign: int) -> None:
        tenant = running.job.tenant
        gpus = running.placement.gpu_count * sign
        self._tenant_gpus[tenant] = self._tenant_gpus.get(tenant, 0) + gpus
        if not self._tenant_gpus[tenant]:
            del self._tenant_gpus[tenant]
        for s in running.placement.slices:
            key = (tenant, self._node_pool[self._ord[s.node]])
            self._tenant_pool_gpus[key] = self._tenant_pool_gpus.get(key, 0) + len(s.gpus) * sign
            if not self._tenant_pool_gpus[key]:
                del self._tenant_pool_gpus[key]

    def _set_free(self, i: int, new_mask: int) -> None:
        if self._avail[i]:
            self._index_node(i, self._free_mask[i], -1)
            self._free_mask[i] = new_mask
            self._index_node(i, new_mask, +1)
        else:
            self._free_mask[i] = new_mask

    def _index_node(self, i: int, mask: int, sign: int) -> None:
        p = self._pools[self._node_pool[i]]
        free = mask.bit_count()
        bit = 1 << i
        buckets = self._pool_buckets[p.index]
        if sign > 0:
            buckets[free] |= bit
        else:
            buckets[free] &= ~bit
        delta = free * sign
        self._pool_free[p.index] += delta
        self._type_free[p.gpu_type] += delta
        self._site_free[p.site] += delta


def _mask(ordinals: list[int]) -> int:
    m = 0
    for i in ordinals:
        m |= 1 << i
    return m


def _bits(mask: int) -> tuple[int, ...]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return tuple(out)
