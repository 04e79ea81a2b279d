"""``masnaa up`` as a user runs it: a real server process on loopback, the CLI over HTTP,
real jobs; then Ctrl-C, a job that ends while nothing watches, and a second ``up``."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from masnaa.executors import records
from masnaa.executors.local import LocalExecutor

CLI = [sys.executable, "-c", "from masnaa.cli.main import app; app()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def masnaa(env: dict[str, str], *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def up_env(tmp_path: Path) -> tuple[Path, dict[str, str], int]:
    """A home of its own, this process's environment without MASNAA_*, a free port."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASNAA_")}
    env.update(MASNAA_HOME=str(home), MASNAA_VIRTUAL_GPUS="1x8")
    return home, env, free_port()


def start_up(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*CLI, "up", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 40
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def wait_state(port: int, token: str, job: str, states: tuple[str, ...]) -> dict[str, object]:
    """Poll the API (cheaper than a CLI process per look) until the job is in ``states``."""
    deadline = time.monotonic() + 30
    while True:
        shown = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/jobs/{job}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        ).json()
        if shown.get("state") in states:
            return shown
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_up_submit_logs_restart_and_adopt(tmp_path: Path) -> None:
    home, env, port = up_env(tmp_path)
    log = tmp_path / "up.log"
    proc = start_up(env, port, log)
    try:
        banner = log.read_text()
        assert f"http://127.0.0.1:{port}" in banner
        assert str(home / "masnaa.sqlite") in banner
        assert re.search(r"\d+ (virtual|real) GPUs", banner), banner
        # No account named: one plain line says whose jobs these are, and what that means.
        assert re.search(r"jobs +run as \S+.*tenants are not isolated", banner), banner
        assert home.stat().st_mode & 0o777 == 0o700  # the database and credentials: ours
        token = re.search(r"token\s+(msn_\S+)", banner)
        assert token and token.group(1) in (home / "credentials.toml").read_text()

        job = masnaa(
            env,
            "submit",
            "--gpus",
            "2",
            "--",
            "sh",
            "-c",
            "echo $CUDA_VISIBLE_DEVICES",
            cwd=tmp_path,
        ).strip()
        wait_state(port, token.group(1), job, ("succeeded",))
        seen = masnaa(env, "logs", job, cwd=tmp_path).strip()
        assert re.fullmatch(r"\d+,\d+", seen), seen
        assert len(set(seen.split(","))) == 2

        # A job outlives the server: Ctrl-C, it ends meanwhile, the next `up` records its code.
        slow = masnaa(
            env, "submit", "--gpus", "1", "--", "sh", "-c", "sleep 2; exit 7", cwd=tmp_path
        ).strip()
        wait_state(port, token.group(1), slow, ("running",))
    finally:
        stop(proc)
    assert "running jobs keep running" in log.read_text()
    time.sleep(2.5)
    proc = start_up(env, port, log)
    try:
        shown = wait_state(port, token.group(1), slow, ("failed",))
        assert shown["exit_code"] == 7, shown
        assert "exited with code 7" in masnaa(env, "show", slow, cwd=tmp_path)
        # Bootstrap is idempotent: the same token still works, no second operator.
        assert log.read_text().count(token.group(1)) == 2
        # A second `up` on the same home is refused, and leaves the CLI pointed at
        # the server that runs.
        before = (home / "credentials.toml").read_text()
        refused = subprocess.run(
            [*CLI, "up", "--port", str(free_port())],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert refused.returncode == 1 and "loop-running" in refused.stderr, refused
        assert (home / "credentials.toml").read_text() == before
    finally:
        stop(proc)


@pytest.mark.slow
def test_a_deleted_database_takes_no_jobs_and_the_next_up_names_the_runs_it_lost(
    tmp_path: Path,
) -> None:
    from masnaa.executors import records

    home, env, port = up_env(tmp_path)
    log = tmp_path / "up.log"
    proc = start_up(env, port, log)
    token = re.search(r"token\s+(msn_\S+)", log.read_text())
    assert token
    auth = {"Authorization": f"Bearer {token.group(1)}"}
    api = f"http://127.0.0.1:{port}"
    try:
        job = masnaa(env, "submit", "--", "sleep", "60", cwd=tmp_path).strip()
        wait_state(port, token.group(1), job, ("running",))
        (home / "masnaa.sqlite").unlink()
        ready = httpx.get(f"{api}/readyz", timeout=5)
        assert ready.status_code == 503, ready.text
        assert "deleted or replaced" in ready.json()["error"]["message"]
        r = httpx.post(f"{api}/api/v1/jobs", json={"command": ["true"]}, headers=auth, timeout=5)
        assert r.status_code == 503 and r.json()["error"]["code"] == "database-unavailable"
        with httpx.Client(base_url=api, timeout=5) as portal:
            form = portal.get("/login?lang=fr").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert csrf
            portal.post("/login", data={"token": token.group(1), "next": "/",
                                        "csrf_token": csrf.group(1)})  # fmt: skip
            page = portal.get("/jobs")  # a page that reads the database
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert "Indisponible" in page.text  # a page in the reader's language, not JSON
    finally:
        stop(proc)
    refused = subprocess.run([*CLI, "up", "--port", str(port)], env=env, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 1 and "unknown-runs" in refused.stderr, refused
    assert f"{job} run 1" in refused.stderr
    run = records.attempt_dir(home / "jobs", job, 1)
    shim = records.read_json(run / records.SHIM)
    assert shim is not None
    os.kill(int(shim["pid"]), signal.SIGTERM)  # the operator stops the run it names
    deadline = time.monotonic() + 30
    while LocalExecutor(home / "jobs").running_attempts():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc = start_up(env, port, log)  # and then a new factory starts
    stop(proc)


def _pid_of(pid_file: Path) -> tuple[int, int | None]:
    """The process that wrote ``pid_file``, with its start time (``None``: it had already
    ended when looked at, which on a loaded machine may come after its job's end)."""
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline, f"{pid_file} never appeared"
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    return pid, records.process_start_ticks(pid)


@pytest.mark.slow
def test_what_jobs_detach_ends_with_them_and_a_deleted_log_is_an_error(tmp_path: Path) -> None:
    """The audit's two findings, as it ran them: `setsid` children outlived their job's
    end and its cancel, and `masnaa logs` of a deleted log printed nothing and exited 0."""
    home, env, port = up_env(tmp_path)
    proc = start_up(env, port, tmp_path / "up.log")
    token = re.search(r"token\s+(msn_\S+)", (tmp_path / "up.log").read_text())
    assert token is not None
    left: list[tuple[int, int | None]] = []
    try:
        scripts = {}
        for name in ("a", "b"):
            scripts[name] = tmp_path / f"{name}.sh"
            scripts[name].write_text(
                f"echo $$ > {tmp_path}/{name}.tmp; mv {tmp_path}/{name}.tmp {tmp_path}/{name}.pid;"
                " exec sleep 300\n"
            )
        a = masnaa(env, "submit", "-J", "a", "--", "sh", "-c",
                   f"setsid sh {scripts['a']} & echo hello; sleep 2; exit 0", cwd=tmp_path).strip()
        b = masnaa(env, "submit", "-J", "b", "--", "sh", "-c",
                   f"setsid sh {scripts['b']} & sleep 100", cwd=tmp_path).strip()
        left += [_pid_of(tmp_path / "a.pid"), _pid_of(tmp_path / "b.pid")]
        wait_state(port, token.group(1), b, ("running",))
        masnaa(env, "cancel", b, cwd=tmp_path)
        wait_state(port, token.group(1), a, ("succeeded",))
        wait_state(port, token.group(1), b, ("cancelled",))
        for pid, ticks in left:
            assert ticks is None or not records.same_process(pid, ticks), (
                "a detached process outlived its job"
            )

        assert masnaa(env, "logs", a, cwd=tmp_path) == "hello\n"
        run_dir = home / "jobs" / a / "1"
        for remove in ((run_dir / "stdout.log").unlink, lambda: shutil.rmtree(home / "jobs" / a)):
            remove()
            done = subprocess.run([*CLI, "logs", a], env=env, cwd=tmp_path, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 1 and done.stdout == "", done
            assert "log-not-found" in done.stderr and "is gone" in done.stderr, done.stderr
    finally:
        stop(proc)
        for pid, ticks in left:
            if ticks is not None and records.same_process(pid, ticks):
                os.kill(pid, signal.SIGKILL)
