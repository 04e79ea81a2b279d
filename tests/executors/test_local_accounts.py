"""Jobs that run as their tenant's Unix account (``LaunchSpec.run_as``) on the local
executor, with real processes and real throwaway accounts (``unix_accounts``; skipped,
with the reason, where the tests do not run as root or ``useradd`` is missing).

What is checked: the job's process has the account's ids for good; it cannot read the
operator's credentials, another run's records, or the environment of another tenant's
running job; its output still reaches the logs; stopping still gives it SIGTERM to
trap, then SIGKILL after the grace, and takes what it detached, also when its
supervisor is lost; a fresh executor adopts it; an account that does not exist
refuses the launch with its name. The last tests need no root."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.executors.test_local_executor import wait_done, wait_for_file

from masnaa.executors import records
from masnaa.executors.base import LaunchRejected, LaunchSpec, NodeGpus
from masnaa.executors.local import LocalExecutor, job_environment
from unix_accounts import throwaway_accounts

SECRET = "hf_secret_of_tenant_a"
OPERATOR_TOKEN = "msn_operator_token"


def run(job: str, script: str, run_as: str | None, **extra: object) -> LaunchSpec:
    return LaunchSpec(
        job_id=job, attempt=1, argv=("sh", "-c", script), placement=(NodeGpus("n", (0,)),),
        time_limit=60.0, kill_grace=5.0, run_as=run_as, **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def accounts() -> Iterator[list[pwd.struct_passwd]]:
    with throwaway_accounts(2) as made:
        yield made


@pytest.fixture
def home() -> Iterator[Path]:
    """A home as open as a careless operator's (0755 under /tmp, its jobs root too): only
    the executor's own modes keep the run records from jobs of other accounts."""
    path = Path(tempfile.mkdtemp(prefix="runas-", dir="/tmp"))
    path.chmod(0o755)
    (path / "jobs").mkdir(mode=0o755)
    (path / "jobs").chmod(0o755)
    creds = path / "credentials.toml"
    creds.write_text(f'token = "{OPERATOR_TOKEN}"\n')
    creds.chmod(0o600)  # as ``masnaa up`` writes it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ex(home: Path) -> Iterator[LocalExecutor]:
    # Its own scratch root: the tests' job ids repeat across runs of the suite.
    executor = LocalExecutor(home / "jobs", scratch_root=home / "scratch")
    yield executor
    # Nothing of a failed test may outlive it (its account is deleted next).
    for job, attempt in executor.running_attempts():
        executor.stop(job, attempt, 0.0, "test over")
        wait_done(executor, job, attempt)


def job_pid(ex: LocalExecutor, job: str) -> int:
    path = ex.attempt_dir(job, 1) / records.JOB
    wait_for_file(path)
    record = records.read_json(path)
    assert record is not None
    return int(record["pid"])


def wait_for_line(path: Path, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, path.read_text() if path.exists() else "")
        if found:
            return found
        assert time.monotonic() < deadline, f"{pattern!r} never appeared in {path}"
        time.sleep(0.02)


def ids(pid: int, field: str) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def alive(pid: int) -> bool:
    state = records.process_start_ticks(pid)
    return state is not None


# -- as root, with real accounts ----------------------------------------------------------------
def test_the_job_runs_as_its_tenants_account_for_good_and_its_output_reaches_the_logs(
    ex: LocalExecutor, accounts: list[pwd.struct_passwd]
) -> None:
    a = accounts[0]
    ex.start(run("ids", 'echo "$HOME $USER $LOGNAME"; echo to-stderr >&2; exec sleep 30',
                 a.pw_name))
    pid = job_pid(ex, "ids")
    out, err = ex.log_files("ids", 1)
    wait_for_line(out, a.pw_name)
    # Real, effective, saved and filesystem ids: none is left to go back to root with.
    assert ids(pid, "Uid") == [a.pw_uid] * 4
    assert ids(pid, "Gid") == [a.pw_gid] * 4
    assert ids(pid, "Groups") == sorted(set(os.getgrouplist(a.pw_name, a.pw_gid)))
    assert out.read_text().split() == [a.pw_dir, a.pw_name, a.pw_name]
    wait_for_line(err, "to-stderr")
    ex.stop("ids", 1, 0.0, "done")
    assert wait_done(ex, "ids").reason == "stopped"


def test_the_job_cannot_read_the_control_planes_files_nor_another_tenants_job(
    ex: LocalExecutor, home: Path, accounts: list[pwd.struct_passwd]
) -> None:
    a, b = accounts
    ex.start(run("victim", f"echo {SECRET}; exec sleep 60", a.pw_name,
                 env={"A_SECRET": SECRET}))
    victim = job_pid(ex, "victim")
    wait_for_line(ex.log_files("victim", 1)[0], SECRET)
    jobs = home / "jobs"
    tries = {
        "credentials": f"cat {home}/credentials.toml",
        "spec": f"cat {jobs}/victim/1/{records.SPEC}",
        "log": f"cat {jobs}/victim/1/{records.STDOUT}",
        "listing": f"ls {jobs}",
        "environ": f"cat /proc/{victim}/environ",
        "signal": f"kill -TERM {victim}",
    }
    script = "\n".join(f"{line} 2>/dev/null || echo refused:{name}" for name, line in tries.items())
    ex.start(run("thief", script, b.pw_name))
    seen = wait_done(ex, "thief")
    out = ex.log_files("thief", 1)[0].read_text()
    assert seen.reason == "exited"
    assert SECRET not in out and OPERATOR_TOKEN not in out
    assert sorted(re.findall(r"refused:(\w+)", out)) == sorted(tries)
    assert alive(victim)
    ex.stop("victim", 1, 0.0, "done")
    wait_done(ex, "victim")


def test_a_cancel_gives_the_job_its_sigterm_to_trap_within_the_grace(
    ex: LocalExecutor, accounts: list[pwd.struct_passwd]
) -> None:
    ex.start(run("polite", "trap 'echo checkpointed; exit 0' TERM; echo ready; sleep 30 & wait",
                 accounts[0].pw_name))
    out = ex.log_files("polite", 1)[0]
    wait_for_line(out, "ready")
    asked = time.monotonic()
    ex.stop("polite", 1, grace_seconds=20, reason="cancelled")
    seen = wait_done(ex, "polite")
    assert time.monotonic() - asked < 5
    assert (seen.exit_code, seen.reason, seen.stop_reason) == (0, "stopped", "cancelled")
    assert "checkpointed" in out.read_text()


def test_a_stubborn_job_is_killed_after_the_grace_with_what_it_detached(
    ex: LocalExecutor, accounts: list[pwd.struct_passwd]
) -> None:
    script = (
        "trap 'echo got-term' TERM; setsid sh -c 'echo detached $$; exec sleep 300' & "
        "while true; do sleep 0.05; done"
    )
    ex.start(run("stubborn", script, accounts[0].pw_name))
    out = ex.log_files("stubborn", 1)[0]
    detached = int(wait_for_line(out, r"detached (\d+)").group(1))
    asked = time.monotonic()
    ex.stop("stubborn", 1, grace_seconds=0.6, reason="preempted")
    seen = wait_done(ex, "stubborn")
    assert time.monotonic() - asked >= 0.55, "SIGKILL came before the grace ended"
    assert (seen.signal, seen.exit_code) == (signal.SIGKILL, 137)
    assert "got-term" in out.read_text()
    assert not alive(detached)


def test_a_lost_run_of_an_account_is_swept_by_its_tag(
    ex: LocalExecutor, accounts: list[pwd.struct_passwd]
) -> None:
    # The detached process leaves the job's group; with its supervisor gone it goes to
    # init, and only its run tag (in an environment of the account's uid) finds it.
    script = "setsid sh -c 'echo detached $$; exec sleep 300' & exec sleep 300"
    ex.start(run("orphaned", script, accounts[0].pw_name))
    detached = int(wait_for_line(ex.log_files("orphaned", 1)[0], r"detached (\d+)").group(1))
    shim = records.read_json(ex.attempt_dir("orphaned", 1) / records.SHIM)
    assert shim is not None
    ticks = records.process_start_ticks(detached)
    os.kill(int(shim["pid"]), signal.SIGKILL)
    try:
        assert wait_done(ex, "orphaned").state == "lost"
        deadline = time.monotonic() + 5
        while alive(detached) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(detached)
    finally:  # with the defect back, nothing else would ever end it
        if records.same_process(detached, ticks):
            os.kill(detached, signal.SIGKILL)


def test_a_fresh_executor_adopts_the_run_and_stops_it(
    ex: LocalExecutor, home: Path, accounts: list[pwd.struct_passwd]
) -> None:
    ex.start(run("adopted", "trap 'echo bye; exit 0' TERM; echo ready; sleep 30 & wait",
                 accounts[1].pw_name))
    out = ex.log_files("adopted", 1)[0]
    wait_for_line(out, "ready")
    fresh = LocalExecutor(home / "jobs")  # as after ``masnaa up`` restarts
    assert fresh.poll("adopted", 1).state == "running"
    fresh.stop("adopted", 1, grace_seconds=10, reason="cancelled")
    seen = wait_done(fresh, "adopted")
    assert (seen.exit_code, seen.stop_reason) == (0, "cancelled")
    assert "bye" in out.read_text()


def test_a_script_without_a_working_directory_gets_a_private_one(
    ex: LocalExecutor, accounts: list[pwd.struct_passwd]
) -> None:
    a = accounts[0]
    body = '#!/bin/bash\necho "$(id -u) $(pwd)"; stat -c "%u %a" .\n'
    ex.start(LaunchSpec(job_id="script", attempt=1, argv=(), script=body,
                        placement=(NodeGpus("n", (0,)),), time_limit=60.0, run_as=a.pw_name))
    seen = wait_done(ex, "script")
    out = ex.log_files("script", 1)[0].read_text().split()
    assert seen.exit_code == 0, ex.log_files("script", 1)[1].read_text()
    uid, where, owner, mode = out
    assert (int(uid), int(owner), mode) == (a.pw_uid, a.pw_uid, "700")
    assert not where.startswith(str(ex.root)) and not Path(where).exists()  # left empty: gone
    assert where == str(ex.scratch_root / "script")
    assert (ex.scratch_root.stat().st_uid, oct(ex.scratch_root.stat().st_mode & 0o777)) == (
        0, "0o711")


def test_every_run_of_a_job_without_a_working_directory_works_in_the_same_one(
    ex: LocalExecutor, accounts: list[pwd.struct_passwd]
) -> None:
    # A run preempted after its checkpoint: the next run must find the checkpoint.
    a = accounts[0]
    body = 'cat ckpt 2>/dev/null || echo none; echo "step $MASNAA_ATTEMPT" > ckpt; pwd'
    for attempt in (1, 2):
        ex.start(LaunchSpec(job_id="resumed", attempt=attempt, argv=("sh", "-c", body),
                            placement=(NodeGpus("n", (0,)),), time_limit=60.0,
                            run_as=a.pw_name))
        assert wait_done(ex, "resumed", attempt).exit_code == 0
    first = ex.log_files("resumed", 1)[0].read_text().split("\n")
    second = ex.log_files("resumed", 2)[0].read_text().split("\n")
    assert first[0] == "none" and second[0] == "step 1"
    assert first[1] == second[1] == str(ex.scratch_root / "resumed")
    kept = ex.scratch_root / "resumed"  # it holds the checkpoint: kept after the run
    assert (kept / "ckpt").read_text() == "step 2\n"
    assert (kept.stat().st_uid, oct(kept.stat().st_mode & 0o777)) == (a.pw_uid, "0o700")


def test_a_working_directory_the_account_may_not_enter_fails_the_launch(
    ex: LocalExecutor, accounts: list[pwd.struct_passwd]
) -> None:
    private = Path(tempfile.mkdtemp(prefix="runas-private-", dir="/tmp"))  # 0700, root's
    try:
        ex.start(run("outside", "echo entered", accounts[0].pw_name, workdir=str(private)))
        seen = wait_done(ex, "outside")
    finally:
        private.rmdir()
    assert (seen.reason, seen.exit_code) == ("launch-failed", 126)
    assert accounts[0].pw_name in seen.message and str(private) in seen.message
    assert "entered" not in ex.log_files("outside", 1)[0].read_text()


# -- without root ---------------------------------------------------------------------------------
def test_an_unknown_account_refuses_the_launch_by_name_and_claims_nothing(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path / "jobs", switch_users=True)
    with pytest.raises(LaunchRejected, match=r"'mt-no-such-account'.*does not exist"):
        ex.start(run("nobody-home", "true", "mt-no-such-account"))
    with pytest.raises(LaunchRejected, match="root"):
        ex.start(run("as-root", "true", pwd.getpwuid(0).pw_name))
    assert ex.poll("nobody-home", 1).state == "absent"
    assert ex.poll("as-root", 1).state == "absent"


def test_an_executor_that_cannot_switch_runs_the_job_as_its_own_user(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path / "jobs", switch_users=False)
    ex.start(run("mine", "id -u", "mt-no-such-account"))
    assert wait_done(ex, "mine").exit_code == 0
    assert ex.log_files("mine", 1)[0].read_text().strip() == str(os.geteuid())


def test_the_run_records_are_the_executors_alone(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir(mode=0o755)
    (tmp_path / "jobs").chmod(0o755)  # an older home
    ex = LocalExecutor(tmp_path / "jobs")
    ex.start(run("modes", "true", None))
    wait_done(ex, "modes")
    for d in (ex.root, ex.root / "modes", ex.attempt_dir("modes", 1)):
        assert d.stat().st_mode & 0o777 == 0o700, d


def test_the_accounts_home_and_names_replace_the_executors() -> None:
    account = pwd.struct_passwd(("alice", "x", 1234, 1234, "", "/home/alice", "/bin/bash"))
    base = {"PATH": "/usr/bin", "HOME": "/root", "USER": "root", "LOGNAME": "root"}
    env = job_environment(run("e", "true", "alice", env={"SHELL": "/bin/zsh"}), base,
                          account=account)
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == ("/home/alice", "alice", "alice")
    assert env["SHELL"] == "/bin/zsh" and env["PATH"] == "/usr/bin"  # the spec still wins
