"""The supervisor of one local attempt: ``python -m masnaa.executors.shim ATTEMPT_DIR --lock-fd N``.

The local executor starts one shim per attempt, in a session of its own, so
the shim outlives the control loop: if the loop is killed -9, the job keeps
running and its exit status is still recorded. The shim:

1. holds the attempt's ``lock`` (inherited as ``--lock-fd``) until it exits:
   lock held ⇔ a supervisor is alive;
2. makes itself the *child subreaper* of what it starts (``proctrack``), so
   that a process the job detaches (``setsid``, a daemon's double fork) stays
   its descendant instead of going to init;
3. installs its SIGTERM handler, then writes ``shim.json`` (pid + start time);
4. creates the log files, then spawns the job in a new session (so the job is
   its own process group), with stdin from /dev/null and stdout/stderr
   appended to them; a job with an account (``run_as`` in ``spec.json``)
   drops to it in the child after the files are open (supplementary groups,
   then gid, then uid, for good: real, effective and saved ids), then enters
   its working directory with the account's rights (``cd`` as root would let
   it start in a directory it may not reach), and gets its script through an
   inherited descriptor, as the run directory is not its to read;
5. enforces the time limit: SIGTERM to the job's group and to every other
   process of the run (``proctrack.sweep``: its descendants and the processes
   carrying its ``MASNAA_RUN_TAG``), ``kill_grace`` seconds, then SIGKILL;
6. on SIGTERM (a stop request; grace and reason read from ``stop.json``)
   does the same with the requested grace;
7. after the job ends, SIGKILLs whatever is left of the run, its group and
   every process it started however it detached, until none is left; then
   writes ``result.json`` atomically, *then* exits (releasing the lock).

Exit codes follow the shell: a job ended by signal N has ``exit_code`` 128+N
and ``signal`` N. A command that cannot be executed gets 127 (not found) or
126 (not executable), like a shell would, with the reason ``launch-failed``.
Only the standard library and ``records`` are imported, so it starts fast.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from masnaa.executors import proctrack, records


class _Supervisor:
    def __init__(self, directory: Path, spec: dict[str, Any]) -> None:
        self.dir = directory
        self.spec = spec
        self.child: subprocess.Popen[bytes] | None = None
        self.reason: str | None = None  # "stopped" or "time-limit" once escalation began
        self.stop_reason: str | None = None
        self.grace = float(spec.get("kill_grace", 30.0))
        # Re-entrant: the SIGTERM handler runs on the main thread, possibly inside a guarded block.
        self._guard = threading.RLock()
        self._term_sent = False
        self._timers: list[threading.Timer] = []
        env = spec.get("env")
        tag = env.get(proctrack.RUN_TAG) if isinstance(env, dict) else None
        self.tag = tag if isinstance(tag, str) and tag else None  # None: a run from before tags
        self.uids = records.run_uids(spec)  # the tag is searched among its account's processes

    # -- escalation: SIGTERM to the group, grace, SIGKILL ---------------------------------------
    def escalate(self, reason: str, grace: float, stop_reason: str | None) -> None:
        with self._guard:
            if self.reason is not None:
                return
            self.reason, self.grace, self.stop_reason = reason, grace, stop_reason
        self._send_term()

    def _send_term(self) -> None:
        with self._guard:
            child = self.child
            if child is None or self._term_sent or self.reason is None:
                return
            self._term_sent = True
        self._signal_group(signal.SIGTERM)
        self._after(self.grace, lambda: self._signal_group(signal.SIGKILL))

    def _signal_group(self, sig: int) -> None:
        """``sig`` to the job's process group, then to every other process of the run
        (detached ones included): SIGKILL until none is left."""
        if self.child is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, sig)
        proctrack.sweep(
            sig, tag=self.tag, root=os.getpid(), skip_group=self.child.pid, uids=self.uids
        )

    def _after(self, seconds: float, action: Any) -> None:
        timer = threading.Timer(max(0.0, seconds), action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def on_sigterm(self, _signum: int, _frame: object) -> None:
        request = records.read_json(self.dir / records.STOP) or {}
        grace = float(request.get("grace", self.grace))
        self.escalate("stopped", grace, request.get("reason", "signal"))

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        spec = self.spec
        started = time.time()
        # The log files exist from here on, whether the job runs or not: a run that
        # ended without its files is one whose files were removed (``read_log``).
        out = open(spec["stdout"], "ab")  # noqa: SIM115 - handed to the child, closed below
        err = open(spec["stderr"], "ab")  # noqa: SIM115
        try:
            if (self.dir / records.STOP).exists():
                # Stopped before it began: the job never ran.
                request = records.read_json(self.dir / records.STOP) or {}
                return self._result(None, None, "stopped", started, request.get("reason"), "")
            try:
                child = _spawn(spec, out, err)
            except subprocess.SubprocessError:
                # Only ``_enter`` runs in the child before exec: the account may not enter
                # the working directory (the child wrote why to the job's stderr).
                account, workdir = (spec.get("run_as") or {}).get("user"), spec["workdir"]
                message = f"the account {account!r} cannot enter the working directory {workdir!r}"
                return self._result(126, None, "launch-failed", started, None, message)
            except (OSError, ValueError) as exc:
                # ValueError: an environment or argument exec cannot take (a job
                # stored before submission checked it); one launch failure with the
                # reason, not a supervisor that dies at every attempt.
                if isinstance(exc, OSError):
                    code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
                    why = exc.strerror
                else:
                    code, why = 126, str(exc)
                message = f"cannot execute {spec['argv'][0]!r}: {why}"
                err.write(f"masnaa: {message}\n".encode())
                return self._result(code, None, "launch-failed", started, None, message)
        finally:
            out.close()
            err.close()
        started = time.time()
        with self._guard:
            self.child = child
        records.write_json(
            self.dir / records.JOB,
            {
                "pid": child.pid,
                "start_ticks": records.process_start_ticks(child.pid),
                "started_at": started,
            },
        )
        self._send_term()  # a stop that arrived while spawning
        self._after(
            float(spec["time_limit"]),
            lambda: self.escalate("time-limit", float(spec.get("kill_grace", 30.0)), None),
        )
        returncode = _wait(child)
        for timer in self._timers:
            timer.cancel()
        # Whatever the job left behind goes with it: its group, and what it detached.
        self._signal_group(signal.SIGKILL)
        _reap_all()
        sig = -returncode if returncode < 0 else None
        code = 128 + sig if sig is not None else returncode
        return self._result(code, sig, self.reason or "exited", started, self.stop_reason, "")

    def _result(
        self,
        code: int | None,
        sig: int | None,
        reason: str,
        started: float,
        stop_reason: str | None,
        message: str,
    ) -> dict[str, Any]:
        return {
            "exit_code": code,
            "signal": sig,
            "reason": reason,
            "stop_reason": stop_reason,
            "started_at": started,
            "ended_at": time.time(),
            "message": message,
        }


def _spawn(spec: dict[str, Any], out: Any, err: Any) -> subprocess.Popen[bytes]:
    """Start the job: as this process's user, or as its account (``run_as``)."""
    account = spec.get("run_as")
    common: dict[str, Any] = {
        "env": spec["env"], "stdin": subprocess.DEVNULL, "stdout": out, "stderr": err,
        "start_new_session": True, "close_fds": True,
    }
    if not isinstance(account, dict):
        return subprocess.Popen(spec["argv"], cwd=spec["workdir"], **common)
    argv = list(spec["argv"])
    passed: tuple[int, ...] = ()
    script = spec.get("script")
    if isinstance(script, str):
        # A private copy the account may read: the run directory is root's alone.
        fd = os.memfd_create("masnaa-script")
        data = Path(script).read_bytes()
        while data:
            data = data[os.write(fd, data) :]
        argv = [f"/proc/self/fd/{fd}" if a == script else a for a in argv]
        passed = (fd,)
    try:
        # Popen switches ids in the child in initgroups' order: setgroups, setgid, setuid
        # (real, effective and saved: no way back); ``_enter`` runs after that.
        return subprocess.Popen(
            argv,
            **common,
            pass_fds=passed,
            user=int(account["uid"]),
            group=int(account["gid"]),
            extra_groups=[int(g) for g in account["groups"]],
            # Safe in a child of this process: no thread of it exists before the job does.
            preexec_fn=_enter(spec["workdir"], str(account["user"])),
        )
    finally:
        for fd in passed:
            os.close(fd)


def _enter(workdir: str, user: str) -> Any:
    """The child's last step before exec, once it is the account: ``cd`` with the
    account's rights (as root it could start in a directory it may not reach)."""

    def enter() -> None:
        try:
            os.chdir(workdir)
        except OSError as exc:
            os.write(2, f"masnaa: {user} cannot enter {workdir!r}: {exc.strerror}\n".encode())
            raise

    return enter


def _wait(child: subprocess.Popen[bytes]) -> int:
    """The job's exit status. As the run's subreaper the shim inherits the job's
    orphans: each one that ends is reaped here too, so none lingers as a zombie."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:  # not reachable while the job is unreaped; be safe
            return child.wait()
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode


def _reap_all() -> None:
    """Reap the orphans that the final sweep killed (those still alive are left)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "--lock-fd":
        sys.stderr.write("usage: python -m masnaa.executors.shim ATTEMPT_DIR --lock-fd N\n")
        return 2
    directory = Path(argv[0])
    lock_fd = int(argv[2])
    # The launcher already holds the lock through this very descriptor; taking it again is a
    # no-op that documents the invariant (and fails loudly if the descriptor is wrong).
    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    spec = records.read_json(directory / records.SPEC)
    if spec is None:
        sys.stderr.write(f"masnaa shim: no {records.SPEC} in {directory}\n")
        return 2
    # Before anything is spawned: every orphan of the run is reparented to this process.
    proctrack.become_subreaper()
    supervisor = _Supervisor(directory, spec)
    signal.signal(signal.SIGTERM, supervisor.on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    records.write_json(
        directory / records.SHIM,
        {"pid": os.getpid(), "start_ticks": records.process_start_ticks(os.getpid())},
    )
    result = supervisor.run()
    scratch = spec.get("scratch")
    if isinstance(scratch, str):
        # Kept when the job left something in it: its next run (after a preemption)
        # works there again. Empty, it goes: the next run makes it again, empty too.
        with contextlib.suppress(OSError):
            os.rmdir(scratch)
    records.write_json(directory / records.RESULT, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
