"""Fixtures for tests against the real local Slurm started by ``scripts/slurm-up.sh``.

Tests marked ``slurm`` are skipped, with the reason, when no Slurm controller
answers here. Each test gets its own state directory and job-id prefix, so
tests never read each other's attempts. They take turns on the one Slurm
(``_one_at_a_time``): the suite runs in parallel (pytest-xdist), and some of
them drain its node or stop its controller.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from slurm_builders import MakeSpec

from masnaa.executors.base import LaunchSpec, NodeGpus
from masnaa.executors.slurm import SlurmExecutor, SlurmSiteConfig


def _slurm_node() -> tuple[str | None, str]:
    if shutil.which("sinfo") is None:
        return None, "Slurm's tools are not installed (run: sudo bash scripts/slurm-up.sh)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return None, "sinfo did not answer in 15 s (run: sudo bash scripts/slurm-up.sh)"
    if out.returncode != 0 or not out.stdout.strip():
        why = (out.stderr or out.stdout).strip()
        return None, f"no Slurm controller answers ({why}); run: sudo bash scripts/slurm-up.sh"
    return out.stdout.split()[0], ""


TURNS = Path(tempfile.gettempdir()) / "masnaa-slurm-tests.lock"
"""Held by whoever uses the one Slurm now, whichever pytest-xdist worker runs it."""


@contextmanager
def _turn() -> Iterator[None]:
    # Read-only: a lock file another user left (root's, from CI) locks all the same.
    try:
        fd = os.open(TURNS, os.O_RDONLY)
    except FileNotFoundError:
        fd = os.open(TURNS, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # which lets the next one in


@pytest.fixture(autouse=True)
def _one_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked ``slurm`` holds ``TURNS`` from before its own fixtures are made
    until after their teardown (which cancels what it left in Slurm): one test's
    drained node or stopped controller is never another's surprise. The session's
    fixtures, made before it, take their turn to ask Slurm (``slurm_node``)."""
    if request.node.get_closest_marker("slurm") is None:
        yield
        return
    with _turn():
        yield


@pytest.fixture(scope="session")
def slurm_node() -> str:
    # Another worker's test may have stopped the controller a moment ago: ask in turn,
    # or this worker would skip every Slurm test for the session.
    with _turn():
        node, why = _slurm_node()
    if node is None:
        pytest.skip(why)
    return node


@pytest.fixture(scope="session")
def own_slurm(slurm_node: str) -> str:
    """The node, when this Slurm is the throw-away one of scripts/slurm-up.sh: tests that
    drain nodes or stop slurmctld run only there, never on a real site."""
    conf = Path("/etc/slurm/slurm.conf")
    if not conf.exists() or "scripts/slurm-up.sh" not in conf.read_text():
        pytest.skip("this Slurm was not started by scripts/slurm-up.sh; not disturbing it")
    return slurm_node


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def site_config(tmp_path: Path) -> SlurmSiteConfig:
    return SlurmSiteConfig(
        site="ma-1",
        state_dir=tmp_path / "slurm-state",
        gpu_types={"h100": "h100-sxm-80gb"},
        command_timeout=5,
        claim_timeout=20,
        stop_margin=1,
    )


@pytest.fixture
def executor(slurm_node: str, site_config: SlurmSiteConfig, prefix: str) -> Iterator[SlurmExecutor]:
    ex = SlurmExecutor(site_config)
    yield ex
    ex.close()
    # What a test left in Slurm goes, so the next test finds free GPUs.
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, timeout=15
    ).stdout
    mine = [
        f[0]
        for f in (line.split() for line in out.splitlines())
        if len(f) > 1 and f[1].startswith(f"masnaa:{prefix}-")
    ]
    if mine:
        subprocess.run(["scancel", *mine], capture_output=True, timeout=15)


@pytest.fixture
def make_spec(slurm_node: str, prefix: str) -> MakeSpec:
    def make(
        name: str, command: str, *, gpus: int = 1, attempt: int = 1, **kw: object
    ) -> LaunchSpec:
        return LaunchSpec(
            job_id=f"{prefix}-{name}",
            attempt=attempt,
            argv=("bash", "-c", command),
            placement=(NodeGpus(slurm_node, tuple(range(gpus))),),
            time_limit=float(kw.pop("time_limit", 120)),
            kill_grace=float(kw.pop("kill_grace", 5)),
            **kw,  # type: ignore[arg-type]
        )

    return make
