"""The batch script's supervision, run by bash directly as slurmd would run it.

No Slurm needed: the script only reads ``SLURM_JOB_ID``/``SLURM_JOB_GPUS``
from its environment, so these tests run it as a real process and check the
records it leaves (exit status, reason, times) and how it handles signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from masnaa.executors.base import LaunchRejected, LaunchSpec, NodeGpus
from masnaa.executors.slurm.records import RunRecords
from masnaa.executors.slurm.script import render_script


def make(tmp_path: Path, command: str, **kw: object) -> tuple[RunRecords, subprocess.Popen[bytes]]:
    rec = RunRecords(tmp_path / "state", "job-1", 1)
    assert rec.claim()
    spec = LaunchSpec(
        job_id="job-1",
        attempt=1,
        argv=("bash", "-c", command),
        placement=(NodeGpus("n1", (0, 1)),),
        time_limit=float(kw.pop("time_limit", 60)),
        kill_grace=float(kw.pop("kill_grace", 5)),
        env=kw.pop("env", {}),  # type: ignore[arg-type]
        workdir=kw.pop("workdir", None),  # type: ignore[arg-type]
    )
    script = render_script(spec, str(rec.dir), spec.workdir or str(rec.dir))
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "4242", "SLURM_JOB_GPUS": "3,5"}
    proc = subprocess.Popen(
        ["bash", "-c", script],
        env=env,
        stdout=open(rec.dir / "stdout", "wb"),  # noqa: SIM115 - the child owns it
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return rec, proc


def wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def test_exit_status_times_gpus_and_environment_are_recorded(tmp_path: Path) -> None:
    rec, proc = make(
        tmp_path,
        'echo "$CUDA_VISIBLE_DEVICES $MASNAA_JOB_ID $MASNAA_ATTEMPT $GREETING"; exit 3',
        env={"GREETING": "salam, hello"},
    )
    assert proc.wait(10) == 3
    ended = rec.reread().exit()
    assert ended is not None and (ended.status, ended.reason) == (3, "exited")
    assert rec.reread().slurm_job_id() == 4242
    started = rec.reread().started_at()
    assert started is not None and ended.ended_at is not None and started <= ended.ended_at
    assert (rec.dir / "stdout").read_text().strip() == "3,5 job-1 1 salam, hello"


def test_the_job_cannot_widen_its_gpus_and_sees_the_run_described(tmp_path: Path) -> None:
    rec, proc = make(
        tmp_path,
        'echo "$CUDA_VISIBLE_DEVICES|$CUDA_DEVICE_ORDER|$MASNAA_NODELIST|$MASNAA_GPUS|"'
        '"$MASNAA_JOB_ID"',
        env={"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "MASNAA_JOB_ID": "forged",
             "CUDA_DEVICE_ORDER": "FASTEST_FIRST"},
    )
    assert proc.wait(10) == 0
    assert (rec.dir / "stdout").read_text().strip() == "3,5|PCI_BUS_ID|n1|2|job-1"


def test_a_stop_forwards_one_term_and_the_job_checkpoints(tmp_path: Path) -> None:
    rec, proc = make(
        tmp_path,
        "trap 'echo term >> marker; exit 0' TERM; touch ready; while :; do sleep 0.1; done",
    )
    wait_for(rec.dir / "ready")
    rec.write_stop(10, time.time(), "preempted")
    os.kill(proc.pid, signal.SIGTERM)  # what `scancel --batch --signal=TERM` does
    assert proc.wait(10) == 0
    assert (rec.dir / "marker").read_text() == "term\n"
    ended = rec.reread().exit()
    assert ended is not None and (ended.status, ended.reason) == (0, "stopped")


def test_a_job_that_ignores_term_is_killed_when_the_grace_ends(tmp_path: Path) -> None:
    rec, proc = make(tmp_path, "trap '' TERM; touch ready; while :; do sleep 0.1; done")
    wait_for(rec.dir / "ready")
    rec.write_stop(1, time.time(), "preempted")
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 128 + 9
    took = time.monotonic() - t0
    assert 0.9 <= took < 5, took
    ended = rec.reread().exit()
    assert ended is not None and (ended.status, ended.reason) == (137, "stopped")


def test_the_time_limit_is_enforced_to_the_second(tmp_path: Path) -> None:
    rec, proc = make(tmp_path, "sleep 30", time_limit=1, kill_grace=1)
    t0 = time.monotonic()
    proc.wait(10)
    assert time.monotonic() - t0 < 4
    ended = rec.reread().exit()
    assert ended is not None and ended.reason == "time-limit"
    assert ended.status == 128 + signal.SIGTERM


def test_a_missing_working_directory_is_a_launch_failure(tmp_path: Path) -> None:
    rec, proc = make(tmp_path, "true", workdir=str(tmp_path / "nowhere"))
    assert proc.wait(10) == 1
    ended = rec.reread().exit()
    assert ended is not None and ended.reason == "launch-failed"
    assert "does not exist" in (rec.dir / "stdout").read_text()


def test_a_missing_program_is_an_ordinary_exit_127(tmp_path: Path) -> None:
    rec, proc = make(tmp_path, "exec no-such-program-here")
    assert proc.wait(10) == 127
    ended = rec.reread().exit()
    assert ended is not None and (ended.status, ended.reason) == (127, "exited")


def test_bad_environment_names_are_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(LaunchRejected, match="not valid"):
        make(tmp_path, "true", env={"BAD-NAME": "x"})


def test_a_timer_killed_from_outside_is_not_the_time_limit(tmp_path: Path) -> None:
    # scancel signals every process of the job at once: the timers' sleeps may die
    # before anything else. That is a stop from outside, not the time limit passing.
    rec, proc = make(tmp_path, "sleep 120", time_limit=60)
    wait_for(rec.dir / "started_at")
    timers: list[str] = []
    deadline = time.monotonic() + 10
    while len(timers) < 2:  # the time-limit timer and the kill timer after it
        assert time.monotonic() < deadline, timers
        time.sleep(0.05)
        timers = subprocess.run(["pgrep", "-s", str(proc.pid), "-x", "sleep"],
                                capture_output=True, text=True).stdout.split()  # fmt: skip
    for pid in timers:
        os.kill(int(pid), signal.SIGTERM)
    time.sleep(0.5)
    assert not (rec.dir / "timed_out").exists()
    command = subprocess.run(["pgrep", "-f", "-x", "sleep 120"], capture_output=True, text=True)
    for pid in command.stdout.split():
        os.kill(int(pid), signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    ended = rec.reread().exit()
    assert ended is not None and (ended.status, ended.reason) == (143, "exited")
