"""The control loop process (``python -m masnaa.service.daemon``) driving a factory's Slurm site.

The factory description declares the site ``executor = "slurm"`` with its
``[sites.slurm]`` options; the loop builds that site's executor itself, as
in production. Jobs are submitted through the service layer exactly as the
API does. The loop is killed with -9 and restarted in the middle of the
scenarios; Slurm's own job list is the witness that nothing ran twice (one
Slurm job per attempt, named ``masnaa-<job>-<attempt>``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slurm_builders import node_state, resume, slurm_jobs_named
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from masnaa.factory import apply_factory
from masnaa.factory.spec import parse_factory
from masnaa.service import jobs
from masnaa.service.tenancy import Caller, bootstrap
from masnaa.store import models as m
from masnaa.store.db import make_engine, session_factory
from masnaa.store.testing import scratch_database

pytestmark = pytest.mark.slurm

TERMINAL = {"succeeded", "failed", "cancelled"}
SITE = "ma-slurm"


@dataclass
class Plant:
    """A factory database, its loop process, and helpers to watch both."""

    url: str
    home: Path
    sessions: sessionmaker[Session]
    caller: Caller
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "masnaa.service.daemon", "--db", self.url,
                 "--home", str(self.home), "--tick", "0.2", "--no-migrate",
                 "--cancel-grace", "2", "--kill-grace", "2"],
                stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, MASNAA_HOME=str(self.home)),
            )  # fmt: skip

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None

    def submit(self, *specs: dict[str, Any]) -> list[str]:
        with self.sessions() as s, s.begin():
            done = jobs.submit_batch(
                s, self.caller,
                [jobs.JobSpec(project="local/default", **{"time_limit": 120, **spec})
                 for spec in specs],
                now=time.time(),
            )  # fmt: skip
            return [r.id for r in done.jobs]

    def cancel(self, job_id: str) -> None:
        with self.sessions() as s, s.begin():
            jobs.cancel(s, self.caller, job_id, now=time.time())

    def rows(self) -> dict[str, m.Job]:
        with self.sessions() as s:
            return {j.id: j for j in s.scalars(select(m.Job))}

    def codes(self, job_id: str) -> list[str]:
        with self.sessions() as s:
            return [
                e.code
                for e in s.scalars(
                    select(m.JobEvent).where(m.JobEvent.job_id == job_id).order_by(m.JobEvent.id)
                )
            ]

    def reasons(self, job_id: str) -> list[str]:
        with self.sessions() as s:
            return [
                e.reason for e in s.scalars(select(m.JobEvent).where(m.JobEvent.job_id == job_id))
            ]

    def site(self, name: str) -> m.Site:
        with self.sessions() as s:
            return s.scalars(select(m.Site).where(m.Site.name == name)).one()

    def until(
        self, check: Callable[[dict[str, m.Job]], bool], timeout: float, what: str
    ) -> dict[str, m.Job]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows()
            if check(rows):
                return rows
            if time.monotonic() > deadline:
                states = {k: (r.state, r.attempt, r.wait_message) for k, r in rows.items()}
                tail = self.log.read_text()[-3000:]
                raise AssertionError(f"not {what} after {timeout}s: {states}\n{tail}")
            time.sleep(0.1)

    def in_states(self, ids: list[str], states: set[str], timeout: float = 60) -> dict[str, m.Job]:
        return self.until(lambda r: all(r[i].state in states for i in ids), timeout, str(states))


def slurm_names() -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, timeout=15
    )
    return out.stdout.split()


def build_plant(tmp_path: Path, node: str, *, local: bool = False) -> Iterator[Plant]:
    sites: list[dict[str, Any]] = [
        {
            "name": SITE,
            "executor": "slurm",
            "slurm": {
                "state_dir": str(tmp_path / "slurm-state"),
                "command_timeout": 2,
                "claim_timeout": 20,
                "stop_margin": 1,
                "gpu_types": {"h100": "h100-80gb"},
            },
        }
    ]
    nodes = [{"site": SITE, "gpu_type": "h100-80gb", "gpus": 8, "names": [node]}]
    if local:
        sites.append({"name": "ma-local", "executor": "local"})
        nodes.append(
            {"site": "ma-local", "gpu_type": "h100-80gb", "gpus": 8, "names": ["box"],
             "virtual": True}
        )  # fmt: skip
    with scratch_database("sqlite", tmp_path) as url:
        engine = make_engine(url)
        sessions = session_factory(engine)
        with sessions() as s, s.begin():
            apply_factory(s, parse_factory({"sites": sites, "gpu_types": [{"name": "h100-80gb"}],
                                            "nodes": nodes}))  # fmt: skip
            bootstrap(s)
            s.execute(update(m.PriorityClass).values(grace_seconds=3.0))
            op = s.scalars(select(m.User).where(m.User.role == m.Role.OPERATOR.value)).one()
            caller = Caller(op.id, op.name, m.Role.OPERATOR, None, None, 0)
        home = tmp_path / "home"
        home.mkdir()
        plant = Plant(url, home, sessions, caller, tmp_path / "loop.log")
        plant.log.touch()
        try:
            yield plant
        finally:
            plant.stop()
            # Whatever a failed test left in Slurm goes, so the next test finds free GPUs.
            out = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True,
                                 text=True, timeout=15).stdout  # fmt: skip
            with sessions() as s:
                ours = {f"masnaa:{j}:" for j in s.scalars(select(m.Job.id))}
            left = [f[0] for f in (ln.split() for ln in out.splitlines())
                    if len(f) > 1 and any(f[1].startswith(o) for o in ours)]  # fmt: skip
            if left:
                subprocess.run(["scancel", *left], capture_output=True, timeout=15)
            engine.dispose()


@pytest.fixture
def plant(tmp_path: Path, slurm_node: str) -> Iterator[Plant]:
    yield from build_plant(tmp_path, slurm_node)


def one_slurm_job_per_attempt(rows: dict[str, m.Job], ids: list[str]) -> None:
    for i in ids:
        for attempt in range(1, rows[i].attempt + 1):
            assert len(slurm_jobs_named(f"masnaa-{i}-{attempt}")) <= 1, (i, attempt)
        assert len(slurm_jobs_named(f"masnaa-{i}-{rows[i].attempt}")) == 1, i


def test_runs_exit_codes_queue_cancel_and_preemption_through_kill_nine(
    plant: Plant, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    see = (f'echo "$CUDA_VISIBLE_DEVICES" > {out}/$MASNAA_JOB_ID.$MASNAA_ATTEMPT; '
           'echo "gpus $CUDA_VISIBLE_DEVICES"')
    plant.start()
    # Four 4-GPU jobs on 8 GPUs, one exiting 3: two wait in Masnaa, never in Slurm.
    wide = plant.submit(
        *[{"command": ["sh", "-c", f"{see}; sleep 2; exit {c}"], "gpus_per_task": 4}
          for c in (0, 3, 0, 0)]
    )  # fmt: skip
    plant.until(lambda r: any(r[i].state == "running" for i in wide), 60, "running")
    plant.kill9()  # while two run and two wait
    seen_pending_in_masnaa = 0
    for _ in range(5):
        rows, names = plant.rows(), slurm_names()
        for i in wide:
            if rows[i].state == "pending":
                seen_pending_in_masnaa += 1
                assert not [n for n in names if n.startswith(f"masnaa-{i}-")], (i, names)
        time.sleep(0.1)
    assert seen_pending_in_masnaa > 0
    plant.start()
    rows = plant.in_states(wide, TERMINAL)
    assert [rows[i].exit_code for i in wide] == [0, 3, 0, 0]
    assert [rows[i].state for i in wide] == ["succeeded", "failed", "succeeded", "succeeded"]
    for i in wide:
        gpus = (out / f"{i}.{rows[i].attempt}").read_text().strip().split(",")
        assert len(gpus) == 4 and rows[i].attempt == 1
        # Its output is where the service reads logs from (masnaa logs, the portal).
        assert rows[i].stdout_path is not None
        assert Path(rows[i].stdout_path).read_text().strip() == f"gpus {','.join(gpus)}"
        assert rows[i].started_at is not None and rows[i].ended_at >= rows[i].started_at
    one_slurm_job_per_attempt(rows, wide)

    # Cancel, and preemption with grace: a low job checkpoints on TERM and is requeued.
    ckpt, armed = tmp_path / "ckpt", tmp_path / "armed"
    # "armed" is written once the TERM handler is in place: a TERM that lands before
    # a job installs its handler cannot be checkpointed, by any scheduler.
    body = (
        f"trap 'echo $MASNAA_ATTEMPT >> {ckpt}; exit 0' TERM; "
        f"if [ $MASNAA_ATTEMPT = 1 ]; then touch {armed}; sleep 100 & wait; fi"
    )
    low, doomed = plant.submit(
        {"command": ["bash", "-c", body], "gpus_per_task": 6, "priority_class": "low"},
        {"command": ["sleep", "100"], "gpus_per_task": 2},
    )
    plant.until(
        lambda r: r[low].state == "running" and r[low].started_at is not None
        and r[doomed].state == "running" and r[doomed].started_at is not None,
        60, "both running",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not armed.exists():
        assert time.monotonic() < deadline, "the low job never installed its TERM handler"
        time.sleep(0.1)
    plant.cancel(doomed)
    plant.kill9()  # with a cancel request and a run in flight
    plant.start()
    (high,) = plant.submit({"command": ["true"], "gpus_per_task": 8, "priority_class": "high"})
    rows = plant.in_states([low, high, doomed], TERMINAL, timeout=90)
    assert rows[doomed].state == "cancelled"
    assert (rows[high].state, rows[low].state, rows[low].attempt) == ("succeeded", "succeeded", 2)
    codes = plant.codes(low)
    assert codes.index("preempting") < codes.index("preempted") < codes.index("succeeded")
    assert ckpt.read_text().split() == ["1"]  # it had its grace to checkpoint, once
    one_slurm_job_per_attempt(rows, [low, high, doomed])


def active_slurm_jobs(job_id: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-t", "R,PD,CG", "-o", "%j"], capture_output=True,
                         text=True, timeout=15).stdout  # fmt: skip
    return [n for n in out.split() if n.startswith(f"masnaa-{job_id}-")]


def test_a_node_down_or_drained_in_slurm_requeues_its_job_and_takes_no_work(
    plant: Plant, own_slurm: str, tmp_path: Path
) -> None:
    node = own_slurm
    go = tmp_path / "go"
    plant.start()
    (job,) = plant.submit(
        {"command": ["sh", "-c", f"[ -e {go} ] || sleep 100"], "gpus_per_task": 2}
    )
    plant.until(lambda r: r[job].started_at is not None, 60, "started")
    try:
        # Down: Slurm ends the job (NODE_FAIL); Masnaa requeues it with Slurm's reason.
        # (This Slurm returns a responsive node to service at once: ReturnToService.)
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=down", "reason=masnaa-test-psu"],
            check=True, capture_output=True, timeout=15,
        )  # fmt: skip
        plant.until(lambda r: "requeued" in plant.codes(job), 60, "requeued")
        assert any("NodeDown" in w or "down" in w for w in plant.reasons(job)), plant.reasons(job)
        # Drained: a run it got meanwhile runs on (Slurm's drain lets it finish); a
        # job still waiting in Masnaa gets no new run on the drained node.
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=drain", "reason=masnaa-test-fan"],
            check=True, capture_output=True, timeout=15,
        )  # fmt: skip
        time.sleep(1.5)  # passes go by
        first = plant.rows()[job]
        time.sleep(1.5)
        later = plant.rows()[job]
        assert (later.state, later.attempt) == (first.state, first.attempt)
        assert later.state in ("running", "pending")
        assert len(active_slurm_jobs(job)) == (1 if later.state == "running" else 0)
    finally:
        go.touch()
        resume(node)
    assert node_state(node) in ("idle", "mixed", "allocated")
    rows = plant.in_states([job], TERMINAL, timeout=60)
    assert rows[job].state == "succeeded" and rows[job].attempt >= 2
    one_slurm_job_per_attempt(rows, [job])


def test_controller_down_marks_the_site_unreachable_and_loses_nothing(
    plant: Plant, own_slurm: str
) -> None:
    plant.start()
    (running,) = plant.submit({"command": ["sh", "-c", "sleep 6; exit 5"], "gpus_per_task": 2})
    plant.until(lambda r: r[running].started_at is not None, 60, "started")
    pid = int(Path("/run/slurmctld.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        while plant.site(SITE).state != "unreachable":
            assert time.monotonic() < deadline, plant.log.read_text()[-2000:]
            time.sleep(0.2)
        assert "controller" in plant.site(SITE).reason
        (queued,) = plant.submit({"command": ["true"], "gpus_per_task": 1})
        plant.kill9()  # and Masnaa dies too, while the controller is away
        plant.start()
        time.sleep(2)
        rows = plant.rows()
        assert rows[queued].state == "pending"
        assert rows[running].state == "running" and rows[running].attempt == 1
    finally:
        subprocess.run(["bash", "scripts/slurm-up.sh"], check=True, capture_output=True,
                       timeout=120)  # fmt: skip
    rows = plant.in_states([running, queued], TERMINAL, timeout=60)
    assert plant.site(SITE).state == "up"
    assert (rows[running].exit_code, rows[running].attempt) == (5, 1)
    assert (rows[queued].state, rows[queued].attempt) == ("succeeded", 1)
    one_slurm_job_per_attempt(rows, [running, queued])


def test_a_mixed_factory_runs_the_same_spec_at_a_local_site_and_a_slurm_site(
    tmp_path: Path, slurm_node: str
) -> None:
    gen = build_plant(tmp_path, slurm_node, local=True)
    plant = next(gen)
    try:
        plant.start()
        spec = {"command": ["sh", "-c", 'test -n "$CUDA_VISIBLE_DEVICES"; sleep 1'],
                "gpus_per_task": 8}  # fmt: skip
        ids = plant.submit(spec, spec)
        rows = plant.in_states(ids, TERMINAL, timeout=60)
        assert {rows[i].state for i in ids} == {"succeeded"}
        assert {rows[i].site for i in ids} == {SITE, "ma-local"}
    finally:
        gen.close()


def test_time_held_pending_by_slurm_is_not_counted_as_running(plant: Plant) -> None:
    # Someone outside Masnaa holds every GPU of the node: Slurm queues what Masnaa sends.
    hog = subprocess.run(
        ["sbatch", "--parsable", "--gres=gpu:8", "-J", "outside-hog", "-o", "/dev/null",
         "--wrap", "sleep 100"],
        check=True, capture_output=True, text=True, timeout=15,
    ).stdout.strip()  # fmt: skip
    try:
        plant.start()
        (job,) = plant.submit({"command": ["true"], "gpus_per_task": 1})
        rows = plant.until(
            lambda r: r[job].wait_message == "held pending by Slurm: Resources", 60, "held"
        )
        assert rows[job].state == "running" and rows[job].started_at is None
        # Phrased, so the portal shows it in the reader's language (Slurm's code kept).
        held = {"key": "slurm-pending", "params": {"detail": "Resources"}}
        assert rows[job].wait_phrases == [held]
    finally:
        freed = time.time()
        subprocess.run(["scancel", hog], capture_output=True, timeout=15)
    rows = plant.in_states([job], TERMINAL, timeout=60)
    assert rows[job].state == "succeeded"
    assert rows[job].started_at is not None and rows[job].started_at >= freed - 1.0
