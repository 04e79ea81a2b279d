"""The twin's own record of which GPUs each node holds: the invariant checks.

It is kept apart from ``ClusterState`` on purpose: the core's state is what the
checks are about, so the twin records the GPUs held a second way, per node (a
count and a bitmask), and refuses a start or release that this record says is
wrong (``InvariantViolation``). The same counts give the fragmentation samples.
"""

from __future__ import annotations

from masnaa.domain import Cluster, Job, Placement
from masnaa.sim.errors import InvariantViolation


def _mask(gpus: tuple[int, ...]) -> int:
    bits = 0
    for g in gpus:
        bits |= 1 << g
    return bits


class Holdings:
    """GPUs held per node (by position in the cluster: a count and a bitmask of GPU
    indices), and in all."""

    def __init__(self, cluster: Cluster) -> None:
        self.ord = {node.name: k for k, node in enumerate(cluster.nodes)}
        self.cap = [node.gpu_count for node in cluster.nodes]
        self.used = [0] * len(cluster.nodes)
        self.mask = [0] * len(cluster.nodes)
        self.type = [node.gpu_type for node in cluster.nodes]
        self.site = [node.site for node in cluster.nodes]
        self.capacity = sum(self.cap)
        self.held = 0
        self.checks = 0
        """Starts checked so far."""

    def hold(self, job: Job, placement: Placement, gpu_type: str) -> None:
        """Take the placement, once sure the gang is whole, typed and sited right and
        that no node is over-committed (so neither is the cluster); else nothing is
        taken."""
        self.checks += 1
        if gpu_type not in job.gpu_types:
            raise InvariantViolation(
                "wrong-gpu-type", f"job {job.id} started on {gpu_type}, accepts {job.gpu_types}")
        total = 0
        per = job.gpus_per_task
        touched = []
        for s in placement.slices:
            k = self.ord.get(s.node)
            if k is None:
                raise InvariantViolation("unknown-node", f"job {job.id} placed on {s.node!r}")
            c = len(s.gpus)
            if c % per or c == 0:
                raise InvariantViolation(
                    "split-task", f"job {job.id}: {c} GPUs on {s.node} is not whole tasks of {per}")
            if self.type[k] != gpu_type:
                raise InvariantViolation(
                    "wrong-gpu-type", f"job {job.id}: node {s.node} is not {gpu_type}")
            if job.sites is not None and self.site[k] not in job.sites:
                raise InvariantViolation(
                    "wrong-site", f"job {job.id} may run at {job.sites}, placed at "
                    f"{self.site[k]}")
            if self.used[k] + c > self.cap[k]:
                raise InvariantViolation(
                    "over-capacity", f"job {job.id}: node {s.node} would hold "
                    f"{self.used[k] + c} of {self.cap[k]} GPUs")
            bits = _mask(s.gpus)
            if bits.bit_count() != c or bits >> self.cap[k] or bits & self.mask[k]:
                raise InvariantViolation(
                    "gpu-held-twice", f"job {job.id}: GPUs {list(s.gpus)} of {s.node} are "
                    f"repeated, absent or already held")
            total += c
            touched.append((k, c, bits))
        if total != job.total_gpus:
            raise InvariantViolation(
                "partial-gang", f"job {job.id}: placed {total} of {job.total_gpus} GPUs")
        for k, c, bits in touched:
            self.used[k] += c
            self.mask[k] |= bits
        self.held += total

    def release(self, placement: Placement) -> None:
        """Give the placement's GPUs back; each must be held."""
        for s in placement.slices:
            k = self.ord[s.node]
            bits = _mask(s.gpus)
            if bits & self.mask[k] != bits:
                raise InvariantViolation(
                    "release-not-held", f"GPUs {list(s.gpus)} of {s.node} released but not held")
            self.mask[k] &= ~bits
            self.used[k] -= len(s.gpus)
            self.held -= len(s.gpus)

    def fragments(self, smallest: int) -> tuple[int, int, int]:
        """(free GPUs, partly used nodes, free GPUs on nodes with fewer than
        ``smallest`` free: stranded for the smallest waiting task)."""
        free = partial = stranded = 0
        for used, cap in zip(self.used, self.cap, strict=True):
            f = cap - used
            free += f
            if 0 < f < cap:
                partial += 1
            if f < smallest:
                stranded += f
        return free, partial, stranded
