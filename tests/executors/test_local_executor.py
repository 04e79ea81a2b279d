"""The local executor against real processes: GPU pinning, exit codes, stop with grace,
time limits, idempotent start and adoption by a fresh executor object."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from masnaa.executors import records
from masnaa.executors.base import LaunchRejected, LaunchSpec, NodeGpus, Observed, script_argv
from masnaa.executors.local import LocalExecutor, job_environment


def spec(
    job: str,
    script: str,
    *,
    gpus: tuple[int, ...] = (0,),
    uuids: tuple[str, ...] | None = None,
    attempt: int = 1,
    time_limit: float = 60.0,
    kill_grace: float = 5.0,
    env: dict[str, str] | None = None,
    workdir: str | None = None,
) -> LaunchSpec:
    return LaunchSpec(
        job_id=job,
        attempt=attempt,
        argv=("sh", "-c", script),
        placement=(NodeGpus("node-a", gpus, uuids),),
        time_limit=time_limit,
        kill_grace=kill_grace,
        env=env or {},
        workdir=workdir,
    )


def wait_done(ex: LocalExecutor, job: str, attempt: int = 1, timeout: float = 15.0) -> Observed:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = ex.poll(job, attempt)
        if seen.done:
            return seen
        time.sleep(0.01)
    raise AssertionError(f"{job}/{attempt} did not end within {timeout}s: {ex.poll(job, attempt)}")


def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.01)


@pytest.fixture
def ex(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(tmp_path / "jobs")


@pytest.mark.parametrize(
    ("gpus", "uuids", "cuda", "nvidia"),
    [
        ((3,), None, "3", "3"),
        ((0, 1, 6), None, "0,1,6", "0,1,6"),
        ((2, 5), ("GPU-aa", "GPU-bb"), "2,5", "GPU-aa,GPU-bb"),
    ],
)
def test_the_job_sees_exactly_the_placed_gpus(
    ex: LocalExecutor,
    gpus: tuple[int, ...],
    uuids: tuple[str, ...] | None,
    cuda: str,
    nvidia: str,
) -> None:
    ex.start(
        spec(
            "pin",
            'echo "$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$CUDA_DEVICE_ORDER"'
            '"|$MASNAA_JOB_ID"',
            gpus=gpus,
            uuids=uuids,
            # The user's environment cannot widen the placement.
            env={"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"},
        )
    )
    seen = wait_done(ex, "pin")
    assert (seen.state, seen.exit_code, seen.reason) == ("exited", 0, "exited")
    out = ex.log_files("pin", 1)[0].read_text().strip()
    assert out == f"{cuda}|{nvidia}|PCI_BUS_ID|pin"


def test_environment_keeps_only_the_base_list_then_the_spec() -> None:
    base = {"PATH": "/bin", "MASNAA_DB_URL": "postgresql://secret", "HOME": "/h"}
    env = job_environment(spec("e", "true", env={"FOO": "bar"}), base=base)
    assert env["PATH"] == "/bin" and env["HOME"] == "/h" and env["FOO"] == "bar"
    assert "MASNAA_DB_URL" not in env


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_exit_codes_are_recorded(ex: LocalExecutor, code: int) -> None:
    ex.start(spec(f"exit{code}", f"echo out; echo err >&2; exit {code}"))
    seen = wait_done(ex, f"exit{code}")
    assert seen.exit_code == code and seen.signal is None and seen.reason == "exited"
    assert seen.started_at is not None and seen.ended_at is not None
    assert seen.ended_at >= seen.started_at
    out, err = ex.log_files(f"exit{code}", 1)
    assert out.read_text() == "out\n" and err.read_text() == "err\n"


def test_a_job_killed_by_a_signal_reports_128_plus_the_signal(ex: LocalExecutor) -> None:
    ex.start(spec("selfkill", "kill -9 $$"))
    seen = wait_done(ex, "selfkill")
    assert (seen.exit_code, seen.signal) == (137, 9)


def test_a_missing_command_exits_127_like_a_shell(ex: LocalExecutor) -> None:
    ex.start(
        LaunchSpec("nocmd", 1, ("/no/such/program",), (NodeGpus("node-a", (0,)),), time_limit=10)
    )
    seen = wait_done(ex, "nocmd")
    assert (seen.exit_code, seen.reason) == (127, "launch-failed")
    assert "cannot execute" in ex.log_files("nocmd", 1)[1].read_text()


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("echo hi\n", ("/bin/sh", "/p")),
        ("#!/bin/bash\necho hi\n", ("/bin/bash", "/p")),
        ("#! /usr/bin/env python3\nprint(1)\n", ("/usr/bin/env", "python3", "/p")),
        ("#!/bin/bash -eu -o pipefail\n", ("/bin/bash", "-eu -o pipefail", "/p")),  # one arg
        ("#!\necho hi\n", ("/bin/sh", "/p")),
    ],
)
def test_a_script_runs_under_the_interpreter_its_first_line_names(
    script: str, argv: tuple[str, ...]
) -> None:
    assert script_argv(script, "/p") == argv


def test_a_bash_script_runs_under_bash(ex: LocalExecutor) -> None:
    body = '#!/bin/bash\nset -euo pipefail\narr=(a b)\n[[ ${#arr[@]} == 2 ]] && echo "bash ok"\n'
    ex.start(LaunchSpec("bashy", 1, (), (NodeGpus("node-a", (0,)),), time_limit=10, script=body))
    seen = wait_done(ex, "bashy")
    assert (seen.exit_code, seen.reason) == (0, "exited")
    assert ex.log_files("bashy", 1)[0].read_text() == "bash ok\n"


def test_an_environment_exec_refuses_fails_the_launch_once(ex: LocalExecutor) -> None:
    # Submission refuses such a name; a job stored before it did must fail with the
    # reason, not take its supervisor down at every attempt.
    ex.start(spec("badenv", "true", env={"A=B": "x"}))
    seen = wait_done(ex, "badenv")
    assert (seen.exit_code, seen.reason) == (126, "launch-failed")
    assert "environment variable name" in ex.log_files("badenv", 1)[1].read_text()


def test_a_missing_working_directory_is_rejected_before_anything_runs(
    ex: LocalExecutor, tmp_path: Path
) -> None:
    with pytest.raises(LaunchRejected, match="working directory"):
        ex.start(spec("nowd", "true", workdir=str(tmp_path / "absent")))
    assert ex.poll("nowd", 1).state == "absent"


def test_the_working_directory_defaults_to_the_attempt_directory(ex: LocalExecutor) -> None:
    ex.start(spec("wd", "pwd; touch made-here"))
    wait_done(ex, "wd")
    d = ex.attempt_dir("wd", 1)
    assert ex.log_files("wd", 1)[0].read_text().strip() == str(d)
    assert (d / "made-here").exists()


def test_start_is_idempotent_per_job_and_attempt(ex: LocalExecutor, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    s = spec("once", f"echo run >> {counter}")
    for _ in range(3):
        ex.start(s)
    wait_done(ex, "once")
    # A fresh executor (a restarted control loop) does not run it again either.
    LocalExecutor(ex.root).start(s)
    ex.start(s)
    time.sleep(0.3)
    assert counter.read_text() == "run\n"
    # A new attempt is a new run.
    ex.start(spec("once", f"echo run >> {counter}", attempt=2))
    wait_done(ex, "once", attempt=2)
    assert counter.read_text() == "run\nrun\n"


def test_stop_sends_term_waits_the_grace_then_kills(ex: LocalExecutor, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    # Traps TERM, notes it, and keeps running: only SIGKILL ends it.
    ex.start(
        spec(
            "stubborn",
            f"trap 'echo got-term' TERM; touch {ready}; while true; do sleep 0.05; done",
        )
    )
    wait_for_file(ready)
    asked = time.monotonic()
    ex.stop("stubborn", 1, grace_seconds=0.6, reason="preempted")
    seen = wait_done(ex, "stubborn")
    took = time.monotonic() - asked
    assert seen.reason == "stopped" and seen.stop_reason == "preempted"
    assert seen.signal == signal.SIGKILL and seen.exit_code == 137
    assert took >= 0.55, f"SIGKILL came before the grace ended ({took:.2f}s)"
    assert "got-term" in ex.log_files("stubborn", 1)[0].read_text()


def test_a_job_that_honours_term_ends_within_the_grace(ex: LocalExecutor, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    ex.start(
        spec("polite", f"trap 'echo checkpointed; exit 0' TERM; touch {ready}; sleep 30 & wait")
    )
    wait_for_file(ready)
    asked = time.monotonic()
    ex.stop("polite", 1, grace_seconds=20, reason="cancelled")
    seen = wait_done(ex, "polite")
    assert time.monotonic() - asked < 5
    assert (seen.exit_code, seen.reason, seen.stop_reason) == (0, "stopped", "cancelled")
    assert "checkpointed" in ex.log_files("polite", 1)[0].read_text()


def test_stop_before_the_shim_is_ready_means_the_job_never_runs(
    ex: LocalExecutor, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    ex.start(spec("early", f"touch {marker}; sleep 30"))
    ex.stop("early", 1, grace_seconds=1, reason="cancelled")  # typically before the shim is up
    seen = wait_done(ex, "early")
    assert seen.reason == "stopped" and seen.stop_reason == "cancelled"
    if seen.exit_code is None:  # the shim saw the request before spawning
        assert not marker.exists()


def test_the_time_limit_is_enforced_with_term_then_kill(ex: LocalExecutor, tmp_path: Path) -> None:
    ex.start(spec("slow", "trap '' TERM; sleep 30", time_limit=0.4, kill_grace=0.3))
    started = time.monotonic()
    seen = wait_done(ex, "slow")
    took = time.monotonic() - started
    assert seen.reason == "time-limit" and seen.signal == signal.SIGKILL
    assert 0.6 <= took < 5, took


def test_stop_of_unknown_or_finished_attempts_does_nothing(ex: LocalExecutor) -> None:
    ex.stop("never", 1, 1.0, "cancelled")
    assert ex.poll("never", 1).state == "absent"
    ex.start(spec("fin", "exit 4"))
    wait_done(ex, "fin")
    ex.stop("fin", 1, 1.0, "cancelled")
    assert ex.poll("fin", 1).exit_code == 4


def test_a_fresh_executor_adopts_a_running_job_and_sees_its_exit(
    ex: LocalExecutor, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    ex.start(spec("adopt", f"while [ ! -e {go} ]; do sleep 0.02; done; exit 7"))
    time.sleep(0.3)
    ex.close()
    fresh = LocalExecutor(ex.root)
    assert fresh.poll("adopt", 1).state == "running"
    assert ("adopt", 1) in fresh.running_attempts()
    go.touch()
    seen = wait_done(fresh, "adopt")
    assert seen.exit_code == 7


def test_an_exit_while_nobody_watches_keeps_its_real_status(ex: LocalExecutor) -> None:
    ex.start(spec("unwatched", "sleep 0.2; exit 9"))
    ex.close()
    time.sleep(0.8)  # the job ends while no executor object exists
    assert LocalExecutor(ex.root).poll("unwatched", 1).exit_code == 9


def test_a_run_whose_supervisor_died_is_lost_and_its_processes_killed(
    ex: LocalExecutor, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    ex.start(spec("orphan", f"touch {ready}; sleep 30"))
    wait_for_file(ready)
    d = ex.attempt_dir("orphan", 1)
    wait_for_file(d / records.JOB)  # the shim records the job's pid right after spawning it
    shim = records.read_json(d / records.SHIM)
    job = records.read_json(d / records.JOB)
    assert shim is not None and job is not None
    os.kill(shim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while ex.poll("orphan", 1).state == "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    seen = ex.poll("orphan", 1)
    assert seen.state == "lost" and seen.exit_code is None
    deadline = time.monotonic() + 5
    while records.same_process(job["pid"], job["start_ticks"]):
        assert time.monotonic() < deadline, "the orphaned job was not killed"
        time.sleep(0.02)
    # Lost stays lost: starting the same attempt again does not run it twice.
    ex.start(spec("orphan", f"touch {ready}; sleep 30"))
    assert ex.poll("orphan", 1).state == "lost"


def test_a_claim_without_a_spawn_is_lost_not_run(ex: LocalExecutor) -> None:
    # What a launcher killed between the claim and the spawn leaves behind.
    d = ex.attempt_dir("halfway", 1)
    d.mkdir(parents=True)
    records.create_json(d / records.SPEC, {"argv": ["true"]})
    assert ex.poll("halfway", 1).state == "lost"


def test_process_identity_survives_pid_reuse_checks() -> None:
    me = os.getpid()
    ticks = records.process_start_ticks(me)
    assert ticks is not None
    assert records.same_process(me, ticks)
    assert not records.same_process(me, ticks + 1)
    assert not records.same_process(None, ticks)


def _zombie_children() -> list[int]:
    """Our own child processes that exited and were never reaped."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(entry.name))
    return found


def _state(pid: int) -> str | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_supervisors_settled_from_their_result_are_reaped(ex: LocalExecutor) -> None:
    # A run settled from its result file before its supervisor exits is never polled
    # again; the executor must still reap that supervisor, and ``news`` must go quiet.
    for i in range(6):
        ex.start(spec(f"z{i}", "exit 0"))
    shims = {child.pid for child in ex._children.values()}
    for i in range(6):
        wait_for_file(ex.attempt_dir(f"z{i}", 1) / records.RESULT)
    deadline = time.monotonic() + 10
    while any(_state(pid) not in ("Z", None) for pid in shims):  # all exited
        assert time.monotonic() < deadline, f"supervisors did not exit: {shims}"
        time.sleep(0.01)
    assert ex.news()  # each ended supervisor is news once...
    assert not ex.news()  # ...and only once: an idle loop is not woken for ever
    assert not shims & set(_zombie_children())
    for i in range(6):
        assert ex.poll(f"z{i}", 1).exit_code == 0  # the result is still read
