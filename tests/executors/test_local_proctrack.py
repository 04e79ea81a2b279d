"""What a local job detaches goes with it: processes that left the job's process group
(``setsid``, a daemon's double fork, a cleared environment) are killed when the run
ends, stopped when it is stopped, and killed when its supervisor was lost, while the
processes of other runs, and the caller, are left alone. Real processes throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.executors.test_local_executor import spec, wait_done, wait_for_file

from masnaa.executors import proctrack, records
from masnaa.executors.base import LaunchSpec, NodeGpus
from masnaa.executors.local import LocalExecutor, job_environment

Proc = tuple[int, int]  # pid, start ticks: one process for the life of the machine


@pytest.fixture
def ex(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(tmp_path / "jobs")


@pytest.fixture
def escaped() -> Iterator[list[Proc]]:
    """Processes a test started; whatever is left of them is killed afterwards, so a
    failing test (the defect back) leaves no ``sleep`` behind."""
    found: list[Proc] = []
    yield found
    for pid, ticks in found:
        if records.same_process(pid, ticks):
            os.killpg(pid, signal.SIGKILL)  # each leads a group of its own (``setsid``)


def detached(tmp_path: Path, name: str, body: str = "exec sleep 300") -> tuple[str, Path]:
    """A shell line that starts a process in a session of its own (as ``setsid cmd &``
    does), which writes its pid to a file and then runs ``body``."""
    pid_file = tmp_path / f"{name}.pid"
    script = tmp_path / f"{name}.sh"
    script.write_text(f"echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}\n{body}\n")
    return f"setsid sh {script} &", pid_file


def sleeper(pid_file: Path) -> str:
    """A shell line that writes its pid to ``pid_file`` (whole) and sleeps."""
    return f"echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 300"


def found(pid_file: Path, escaped: list[Proc]) -> Proc:
    wait_for_file(pid_file)
    pid = int(pid_file.read_text())
    ticks = records.process_start_ticks(pid)
    assert ticks is not None, "the detached process is not running"
    escaped.append((pid, ticks))
    return pid, ticks


def with_a_daemon(
    ex: LocalExecutor, job: str, tmp_path: Path, escaped: list[Proc]
) -> tuple[Proc, Path, dict[str, Any]]:
    """Run ``job`` (sleeping), which detaches a daemon: the daemon, the run's directory
    once the job is recorded, and its shim's record."""
    line, pid_file = detached(tmp_path, f"{job}-daemon")
    ex.start(spec(job, f"{line} sleep 300"))
    daemon = found(pid_file, escaped)
    d = ex.attempt_dir(job, 1)
    wait_for_file(d / records.JOB)
    shim = records.read_json(d / records.SHIM)
    assert shim is not None
    return daemon, d, shim


def gone(proc: Proc, timeout: float = 0.0) -> bool:
    deadline = time.monotonic() + timeout
    while records.same_process(*proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def session_of(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[3])


def test_what_a_job_detaches_is_killed_when_it_ends(
    ex: LocalExecutor, tmp_path: Path, escaped: list[Proc]
) -> None:
    # The audit's case: `setsid sleep 101 & sleep 2; exit 0`.
    line, pid_file = detached(tmp_path, "d")
    go = tmp_path / "go"
    ex.start(spec("ends", f"{line} while [ ! -e {go} ]; do sleep 0.02; done; exit 0"))
    daemon = found(pid_file, escaped)
    wait_for_file(ex.attempt_dir("ends", 1) / records.JOB)
    job = records.read_json(ex.attempt_dir("ends", 1) / records.JOB)
    assert job is not None and session_of(job["pid"]) == job["pid"]
    assert session_of(daemon[0]) == daemon[0], "not detached: the test proves nothing"
    go.touch()
    seen = wait_done(ex, "ends")
    assert (seen.exit_code, seen.reason) == (0, "exited")
    # The result is written after the sweep: nothing of the run is left by then.
    assert gone(daemon), "a process the job detached outlived the run"


def test_a_daemon_that_clears_its_environment_is_still_found(
    ex: LocalExecutor, tmp_path: Path, escaped: list[Proc]
) -> None:
    # A double fork (its parent exits at once, so it is an orphan) into a new session,
    # with an empty environment: no tag to find, no group to signal. The supervisor is
    # its subreaper, so it is still the run's descendant.
    pid_file = tmp_path / "daemon.pid"
    inner = tmp_path / "inner.sh"
    inner.write_text(f"echo $$ > {pid_file}.tmp; /bin/mv {pid_file}.tmp {pid_file}; "
                     "exec /bin/sleep 300\n")
    ex.start(spec(
        "daemon",
        f"( setsid env -i /bin/sh {inner} & ) ; "
        f"while [ ! -e {pid_file} ]; do sleep 0.02; done; exit 3",
    ))
    daemon = found(pid_file, escaped)
    assert b"MASNAA_RUN_TAG" not in (Path("/proc") / str(daemon[0]) / "environ").read_bytes()
    seen = wait_done(ex, "daemon")
    assert seen.exit_code == 3
    assert gone(daemon), "a daemonised process with no environment outlived the run"


def test_cancel_reaches_what_the_job_detached_term_first_then_kill(
    ex: LocalExecutor, tmp_path: Path, escaped: list[Proc]
) -> None:
    said = tmp_path / "said"
    polite, polite_pid = detached(
        tmp_path, "polite", f"trap 'echo polite-term >> {said}; exit 0' TERM; sleep 300 & wait"
    )
    stubborn, stubborn_pid = detached(
        tmp_path, "stubborn", f"trap 'echo stubborn-term >> {said}' TERM; "
        "while :; do sleep 0.05; done"
    )
    ready = tmp_path / "ready"
    # The job itself waits for both to have said so before it exits on TERM, so that
    # the processes left are those that ignore it.
    ex.start(spec(
        "cancelled",
        f"{polite} {stubborn} "
        f"trap 'while [ $(wc -l < {said}) -lt 2 ]; do sleep 0.02; done; exit 0' TERM; "
        f"touch {said}; touch {ready}; sleep 300 & wait",
    ))
    wait_for_file(ready)
    procs = [found(polite_pid, escaped), found(stubborn_pid, escaped)]
    asked = time.monotonic()
    ex.stop("cancelled", 1, grace_seconds=4, reason="cancelled")
    seen = wait_done(ex, "cancelled")
    assert (seen.reason, seen.stop_reason, seen.exit_code) == ("stopped", "cancelled", 0)
    assert sorted(said.read_text().split()) == ["polite-term", "stubborn-term"]
    assert all(gone(p) for p in procs), "the cancelled job's detached processes survived"
    assert time.monotonic() - asked < 4, "the job waited for SIGKILL"


def test_the_grace_ends_with_sigkill_for_detached_processes_too(
    ex: LocalExecutor, tmp_path: Path, escaped: list[Proc]
) -> None:
    line, pid_file = detached(tmp_path, "deaf", "trap '' TERM; while :; do sleep 0.05; done")
    ex.start(spec("deaf", f"{line} trap '' TERM; while :; do sleep 0.05; done"))
    daemon = found(pid_file, escaped)
    asked = time.monotonic()
    ex.stop("deaf", 1, grace_seconds=0.6, reason="preempted")
    time.sleep(0.3)
    assert records.same_process(*daemon), "SIGKILL came before the grace ended"
    seen = wait_done(ex, "deaf")
    assert seen.signal == signal.SIGKILL and time.monotonic() - asked >= 0.55
    assert gone(daemon)


def test_a_lost_run_s_detached_processes_are_killed_by_its_tag(
    ex: LocalExecutor, tmp_path: Path, escaped: list[Proc]
) -> None:
    daemon, _, shim = with_a_daemon(ex, "lost", tmp_path, escaped)
    os.kill(shim["pid"], signal.SIGKILL)  # its orphans go to init now, not to the shim
    deadline = time.monotonic() + 5
    while ex.poll("lost", 1).state == "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ex.poll("lost", 1).state == "lost"
    assert gone(daemon, timeout=5), "a lost run's detached process was not killed"


def test_the_sweep_spares_other_runs_and_other_processes(
    tmp_path: Path, escaped: list[Proc]
) -> None:
    # Two homes run a job of the same id and attempt; a process outside both carries
    # the same MASNAA_JOB_ID. Ending one run kills its own detached process only.
    one, other = LocalExecutor(tmp_path / "one"), LocalExecutor(tmp_path / "other")
    mine, mine_pid = detached(tmp_path, "mine")
    theirs, theirs_pid = detached(tmp_path, "theirs")
    go = tmp_path / "go"
    one.start(spec("same", f"{mine} while [ ! -e {go} ]; do sleep 0.02; done"))
    other.start(spec("same", f"{theirs} sleep 300"))
    outsider_pid = tmp_path / "outsider.pid"
    outsider = subprocess.Popen(
        ["sh", "-c", sleeper(outsider_pid)],
        env={**os.environ, "MASNAA_JOB_ID": "same", "MASNAA_ATTEMPT": "1"},
        start_new_session=True,
    )
    try:
        procs = [found(p, escaped) for p in (mine_pid, theirs_pid, outsider_pid)]
        go.touch()
        wait_done(one, "same")
        assert gone(procs[0])
        time.sleep(0.2)
        assert records.same_process(*procs[1]), "another home's run was swept"
        assert records.same_process(*procs[2]), "a process outside any run was swept"
        assert other.poll("same", 1).state == "running"
        other.stop("same", 1, 0.5, "cancelled")
        wait_done(other, "same")
        assert gone(procs[1])
    finally:
        other.stop("same", 1, 0, "cleanup")
        outsider.kill()
        outsider.wait()


def test_each_run_has_a_tag_of_its_own_the_job_cannot_override(ex: LocalExecutor) -> None:
    s = spec("tagged", 'echo "$MASNAA_RUN_TAG"', env={proctrack.RUN_TAG: "mine"})
    assert job_environment(s, tag="t1")[proctrack.RUN_TAG] == "t1"
    ex.start(s)
    ex.start(spec("tagged", 'echo "$MASNAA_RUN_TAG"', attempt=2))
    tags = []
    for attempt in (1, 2):
        wait_done(ex, "tagged", attempt)
        tags.append(ex.log_files("tagged", attempt)[0].read_text().strip())
    assert tags[0].startswith("tagged.1.") and tags[1].startswith("tagged.2.")
    assert len(set(tags)) == 2


def test_a_sweep_never_signals_the_caller(tmp_path: Path, escaped: list[Proc]) -> None:
    # The caller carries the tag too (a run's process sweeping its own run): it kills
    # the run's other process and lives to say so.
    tag = f"self-test.{os.getpid()}"
    env = {**os.environ, proctrack.RUN_TAG: tag,
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    pid_file = tmp_path / "sibling.pid"
    sibling = subprocess.Popen(["sh", "-c", sleeper(pid_file)], env=env,
                               start_new_session=True)
    try:
        proc = found(pid_file, escaped)
        sweeper = subprocess.run(
            [sys.executable, "-c", "import signal; from masnaa.executors import proctrack; "
             f"print(proctrack.sweep(signal.SIGKILL, tag={tag!r}, timeout=5))"],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )
        assert (sweeper.returncode, sweeper.stdout.strip()) == (0, "1"), sweeper.stderr
        assert gone(proc, timeout=5)
    finally:
        sibling.kill()
        sibling.wait()


def test_a_script_job_is_tagged_like_a_command(ex: LocalExecutor) -> None:
    ex.start(LaunchSpec("scr", 1, (), (NodeGpus("node-a", (0,)),), time_limit=10,
                        script='echo "$MASNAA_RUN_TAG"\n'))
    wait_done(ex, "scr")
    assert ex.log_files("scr", 1)[0].read_text().startswith("scr.1.")


def test_a_run_whose_directory_was_deleted_is_stopped_before_it_is_called_lost(
    ex: LocalExecutor, tmp_path: Path, escaped: list[Proc]
) -> None:
    import shutil

    daemon, d, shim = with_a_daemon(ex, "deleted", tmp_path, escaped)
    job = records.read_json(d / records.JOB)
    assert job is not None
    escaped.append((int(job["pid"]), int(job["start_ticks"])))
    shutil.rmtree(ex.root / "deleted")  # its supervisor still runs, holding a deleted lock
    seen = ex.poll("deleted", 1)
    assert seen.state == "lost" and "deleted" in (seen.message or ""), seen
    for proc in (daemon, (int(job["pid"]), int(job["start_ticks"])),
                 (int(shim["pid"]), int(shim["start_ticks"]))):  # fmt: skip
        assert gone(proc, timeout=5), "a run whose records were deleted ran on"
    assert ex.poll("deleted", 1).state == "absent"  # nothing left of it: a new run may go
