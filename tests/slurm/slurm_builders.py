"""Helpers for the Slurm tests: waiting on the executor, node states, Slurm's own view."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from masnaa.executors.base import LaunchSpec, Observed
from masnaa.executors.slurm import SlurmExecutor

MakeSpec = Callable[..., LaunchSpec]


def node_state(node: str) -> str:
    out = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def resume(node: str) -> None:
    """Give the node back to service and wait until Slurm schedules on it again."""
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
    deadline = time.monotonic() + 30
    while node_state(node) not in ("idle", "mixed", "allocated"):
        assert time.monotonic() < deadline, f"node {node} stayed {node_state(node)}"
        time.sleep(0.3)


def wait_until(
    ex: SlurmExecutor,
    spec: LaunchSpec,
    predicate: Callable[[Observed], bool],
    timeout: float = 30,
) -> Observed:
    deadline = time.monotonic() + timeout
    while True:
        seen = ex.poll(spec.job_id, spec.attempt)
        if predicate(seen):
            return seen
        assert time.monotonic() < deadline, f"{spec.job_id}: still {seen} after {timeout}s"
        time.sleep(0.2)


def slurm_jobs_named(name: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-n", name, "-o", "%i"],
        capture_output=True,
        text=True,
        timeout=15,
    ).stdout
    return out.split()
