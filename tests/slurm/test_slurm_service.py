"""The control loop driving a Slurm site: the same job specs as a local site, run by Slurm.

The factory declares one site with ``executor = "slurm"`` whose node is the
local Slurm's node; the loop is given a ``SlurmExecutor`` for it and jobs are
submitted through the service layer exactly as the API does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_builders import slurm_jobs_named
from sqlalchemy import select

from masnaa.executors.slurm import SlurmExecutor, SlurmSiteConfig
from masnaa.factory import apply_factory
from masnaa.factory.spec import parse_factory
from masnaa.service import jobs
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.tenancy import Caller, bootstrap
from masnaa.store import models as m
from masnaa.store.db import make_engine, session_factory
from masnaa.store.testing import scratch_database

pytestmark = pytest.mark.slurm


@pytest.fixture
def loop(tmp_path: Path, slurm_node: str) -> Iterator[tuple[ControlLoop, Caller, SlurmExecutor]]:
    with scratch_database("sqlite", tmp_path) as url:
        engine = make_engine(url)
        sessions = session_factory(engine)
        factory = parse_factory(
            {
                "sites": [{"name": "ma-slurm", "executor": "slurm"}],
                "gpu_types": [{"name": "h100-80gb"}],
                "nodes": [
                    {"site": "ma-slurm", "gpu_type": "h100-80gb", "gpus": 8, "names": [slurm_node]}
                ],
            }
        )
        with sessions() as s, s.begin():
            apply_factory(s, factory)
            bootstrap(s)
            op = s.scalars(select(m.User).where(m.User.role == m.Role.OPERATOR.value)).one()
            caller = Caller(op.id, op.name, m.Role.OPERATOR, None, None, 0)
        executor = SlurmExecutor(
            SlurmSiteConfig(
                site="ma-slurm",
                state_dir=tmp_path / "slurm-state",
                gpu_types={"h100": "h100-80gb"},
                command_timeout=5,
            )
        )
        home = tmp_path / "home"
        home.mkdir()
        control = ControlLoop(
            LoopConfig(db_url=url, home=home, tick=0.1, kill_grace=2, cancel_grace=2),
            engine=engine,
            executors={"slurm": executor},
        )
        control.start()
        yield control, caller, executor
        control.close()
        engine.dispose()


def run_until(control: ControlLoop, ids: list[str], states: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        control.run_pass()
        with control.read() as s:
            rows = {j.id: j for j in s.scalars(select(m.Job).where(m.Job.id.in_(ids)))}
        if all(rows[i].state in states for i in ids):
            return rows
        assert time.monotonic() < deadline, {i: rows[i].state for i in ids}
        time.sleep(0.1)


def test_the_loop_runs_jobs_on_slurm_with_their_real_exit_codes(
    loop: tuple[ControlLoop, Caller, SlurmExecutor], tmp_path: Path
) -> None:
    control, caller, _ = loop
    out = tmp_path / "out"
    out.mkdir()
    specs = [
        jobs.JobSpec(
            project="local/default",
            command=["sh", "-c", f'echo "$CUDA_VISIBLE_DEVICES" > {out}/$MASNAA_JOB_ID; exit {c}'],
            gpus_per_task=g,
            time_limit=60,
        )
        for c, g in ((0, 2), (3, 1), (0, 8))
    ]
    with control.write() as s, s.begin():
        ids = [r.id for r in jobs.submit_batch(s, caller, specs, now=time.time()).jobs]
    rows = run_until(control, ids, {"succeeded", "failed", "cancelled"}, timeout=60)
    assert [rows[i].state for i in ids] == ["succeeded", "failed", "succeeded"]
    assert [rows[i].exit_code for i in ids] == [0, 3, 0]
    for i, gpus in zip(ids, (2, 1, 8), strict=True):
        seen = (out / i).read_text().strip().split(",")
        assert len(seen) == gpus
        assert len(slurm_jobs_named(f"masnaa-{i}-{rows[i].attempt}")) == 1
        assert rows[i].started_at is not None and rows[i].ended_at is not None


def test_the_loop_cancels_a_job_running_on_slurm(
    loop: tuple[ControlLoop, Caller, SlurmExecutor],
) -> None:
    control, caller, _ = loop
    spec = jobs.JobSpec(project="local/default", command=["sleep", "120"], time_limit=300)
    with control.write() as s, s.begin():
        (row,) = jobs.submit_batch(s, caller, [spec], now=time.time()).jobs
        job_id = row.id
    run_until(control, [job_id], {"running"}, timeout=60)
    with control.write() as s, s.begin():
        s.get(m.Job, job_id).cancel_requested = True  # what the API's cancel does
    rows = run_until(control, [job_id], {"cancelled"}, timeout=60)
    assert rows[job_id].state == "cancelled"
    assert slurm_jobs_named(f"masnaa-{job_id}-1")  # it was a Slurm job, now ended
