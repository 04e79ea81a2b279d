"""Whether a gang fits a cluster at all: the one rule for jobs too large to run.

Owns ``Pools``: each (site, GPU type) pool's total GPUs and its largest node. A job
fits when some pool it may use (an acceptable GPU type at an allowed site) holds
its whole gang and a node of it holds one task. The engine rejects a job that fits
no pool at its arrival (``too-large``), and ``shape`` leaves such jobs out of the
figures that describe the workload the cluster serves (entitlement, quotas, load
factor, peak demand): both ask this module, so they cannot disagree.
"""

from __future__ import annotations

from masnaa.domain import Cluster


class Pools:
    """The pools of one cluster, for ``fits``."""

    def __init__(self, cluster: Cluster) -> None:
        self.cap: dict[tuple[str, str], tuple[int, int]] = {}
        for node in cluster.nodes:
            total, biggest = self.cap.get((node.site, node.gpu_type), (0, 0))
            self.cap[(node.site, node.gpu_type)] = (
                total + node.gpu_count, max(biggest, node.gpu_count))

    def fits(
        self, total_gpus: int, gpus_per_task: int, gpu_types: tuple[str, ...],
        sites: tuple[str, ...] | None,
    ) -> bool:
        """True when some pool of an acceptable type at an allowed site (``None``: any
        site) holds ``total_gpus`` and has a node of ``gpus_per_task`` GPUs."""
        for (site, gpu_type), (total, biggest) in self.cap.items():
            if gpu_type not in gpu_types or (sites is not None and site not in sites):
                continue
            if total_gpus <= total and gpus_per_task <= biggest:
                return True
        return False
