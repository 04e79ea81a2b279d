"""From a job row to an executor call: which executor runs a site, and the ``LaunchSpec``.

Terms: the *executor name* of a site is ``sites.executor`` (``local``,
``slurm``). ``EXECUTOR_FACTORIES`` maps each name to a constructor taking the
factory's home directory, the site and its options (``[sites.slurm]`` of the
factory description, kept in ``service_state``). All local sites share one
local executor; each slurm site gets its own. A site whose executor cannot
be built here takes no work (its nodes are marked unavailable to the
scheduler, and the loop logs why).

GPU identity: a placement names node-local GPU indices 0..n-1. For the
local executor on real hardware the node's ``gpu_uuids`` (from NVML
discovery) turn them into UUIDs, and ``nvml_index`` (UUID → machine-wide
NVML index, probed when the loop starts) into the index
``CUDA_VISIBLE_DEVICES`` needs — they differ only on a machine that mixes
GPU types. Virtual GPUs have no UUID to give.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from masnaa.executors.base import Executor, LaunchSpec, NodeGpus
from masnaa.executors.local import LocalExecutor
from masnaa.store import models as m

ExecutorFactory = Callable[[Path, str, Mapping[str, Any]], Executor]
"""(home, site, the site's options from the factory description) → its executor."""


def _local(home: Path, site: str, options: Mapping[str, Any]) -> Executor:
    return LocalExecutor(jobs_root(home))


def _slurm(home: Path, site: str, options: Mapping[str, Any]) -> Executor:
    from masnaa.service.sites import slurm_executor

    return slurm_executor(home, site, options)


EXECUTOR_FACTORIES: dict[str, ExecutorFactory] = {"local": _local, "slurm": _slurm}


def jobs_root(home: Path) -> Path:
    """Where the local executor keeps each attempt's records and logs."""
    return home / "jobs"


def build_spec(
    row: m.Job,
    *,
    node_uuids: Mapping[str, list[str]],
    nvml_index: Mapping[str, int],
    kill_grace: float,
    tenant: str | None = None,
    project: str | None = None,
) -> LaunchSpec:
    """The launch of ``row``'s current attempt on its recorded placement."""
    placement = []
    for piece in row.placement or []:
        node = str(piece["node"])
        indices = [int(g) for g in piece["gpus"]]
        known = node_uuids.get(node) or []
        uuids = [known[i] for i in indices if i < len(known)]
        if len(uuids) == len(indices):
            placement.append(
                NodeGpus(
                    node,
                    tuple(nvml_index.get(u, i) for u, i in zip(uuids, indices, strict=True)),
                    tuple(uuids),
                )
            )
        else:
            placement.append(NodeGpus(node, tuple(indices)))
    return LaunchSpec(
        job_id=row.id,
        attempt=row.attempt,
        argv=tuple(row.command or ()) if row.script is None else (),
        script=row.script,
        placement=tuple(placement),
        time_limit=row.time_limit,
        env=dict(row.env or {}),
        workdir=row.workdir,
        kill_grace=kill_grace,
        tenant=tenant,
        project=project,
    )
