"""The ``local`` executor: jobs as real child processes of this machine.

Contract (see ``base`` for the words):

- **Start** writes the attempt's claim (``spec.json``) and spawns a small
  supervisor, ``python -m masnaa.executors.shim``, in a session of its own.
  The claim is created with ``link``: a second ``start`` of the same
  ``(job_id, attempt)`` — from this object, a new one, or another process —
  finds it and does nothing. The shim spawns the job in a new session too, so
  the job is its own process group; what the job detaches from that group
  (``setsid``, daemons) is still found and signalled with it (``proctrack``).
- **GPUs**: the job sees exactly the placed GPUs of this node:
  ``CUDA_VISIBLE_DEVICES`` lists their NVML indices (with
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA numbers GPUs as NVML does),
  ``NVIDIA_VISIBLE_DEVICES`` their UUIDs where known (else the indices).
  The user's environment cannot override these. ``MASNAA_JOB_ID``,
  ``MASNAA_ATTEMPT``, ``MASNAA_NODELIST`` and ``MASNAA_GPUS`` describe the run;
  ``MASNAA_RUN_TAG``, unique to the run, lets its processes be found.
  A placement that spans several (declared) nodes runs the command once,
  on the first node's GPUs, like a batch script on its first node.
- **Environment**: a short list of variables of the executor's own
  environment (``PATH``, ``HOME``, locale, ``USER``, ``TMPDIR``...), then the
  spec's ``env``, then the GPU variables. Nothing else leaks from the
  control plane (no database URL, no tokens).
- **Files**: ``$MASNAA_HOME/jobs/<job>/<attempt>/``, see ``records``; the
  working directory defaults to that directory. The jobs root and every run
  directory are ``0700``, owned by the executor's user.
- **Accounts**: run as root, the executor runs a job whose spec names an
  account (``run_as``, its tenant's) as that account: the shim opens the log
  files, then the job's process drops to the account (its groups, then its
  gid, then its uid) and enters its working directory with the account's own
  rights. It writes its output through the inherited descriptors but cannot
  open its run directory, other runs' records or ``$MASNAA_HOME``: so
  ``HOME``, ``USER``, ``LOGNAME`` and ``SHELL`` are the account's, a script
  is handed to its interpreter as ``/proc/self/fd/N`` (a private copy), and a
  job without a working directory gets one of its own, **the same for every
  run of the job** (so that a run after a preemption finds the checkpoint the
  last one wrote): ``<scratch root>/<job>``, ``0700`` and the account's, under
  ``$TMPDIR/masnaa-scratch-<uid of the executor>`` (``0711``: entered, never
  listed, by accounts). A run that leaves it empty removes it (the next run
  makes it again, empty either way); one that leaves files keeps it, also after
  the job's last run, because an executor cannot tell a run is the last (the
  control loop may requeue it): an operator removes those of finished jobs. An
  account that does not exist, or is root, refuses the launch
  (``LaunchRejected``). Not root, or no account named: the job runs as the
  executor's own user, as before (``masnaa up`` says so).
- **Liveness** is judged by the shim's ``flock`` on the attempt's ``lock``,
  never by a pid alone; a pid read from a file is signalled only if its
  process start time still matches (pid reuse).
- **Exit status** is written by the shim durably before it exits, so a job
  that ends while the control loop is down keeps its real exit code.
- **Lost**: claimed, no live shim, no result (the shim was SIGKILLed, the
  machine rebooted, or the launcher died between claim and spawn). ``poll``
  then kills what remains of the job: its process group and every process
  carrying its run tag.
- **Stop**: ``stop.json`` (grace, reason) then SIGTERM to the shim, which
  SIGTERMs every process of the run (its group, what it detached) and
  SIGKILLs them after the grace. A stop that arrives before the shim is ready
  is read by the shim before it spawns.
- **Time limit** is enforced by the shim (SIGTERM, ``kill_grace``, SIGKILL)
  whether or not the control loop is alive.

Every call returns in milliseconds; nothing here waits for a job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from masnaa.executors import proctrack, records
from masnaa.executors.base import (
    Capabilities,
    Executor,
    LaunchRejected,
    LaunchSpec,
    Observed,
    script_argv,
)

BASE_ENV_KEYS: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TERM",
)
"""Variables of the executor's environment a job inherits; everything else it gets from its spec."""


def job_environment(
    spec: LaunchSpec,
    base: dict[str, str] | None = None,
    tag: str | None = None,
    account: pwd.struct_passwd | None = None,
) -> dict[str, str]:
    """The exact environment the job runs with (pure; tested as such); ``tag``, the
    run's ``MASNAA_RUN_TAG`` (``start`` draws one per run); ``account``, the one the
    job runs as, whose home, name and shell replace the executor's."""
    source = os.environ if base is None else base
    env = {k: source[k] for k in BASE_ENV_KEYS if k in source}
    if account is not None:
        env.update(
            HOME=account.pw_dir,
            USER=account.pw_name,
            LOGNAME=account.pw_name,
            SHELL=account.pw_shell or "/bin/sh",
        )
    env.update(spec.env)
    first = spec.placement[0] if spec.placement else None
    indices = ",".join(str(i) for i in first.indices) if first else ""
    uuids = ",".join(first.uuids) if first and first.uuids else indices
    env.update(
        {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": indices,
            "NVIDIA_VISIBLE_DEVICES": uuids if uuids else "void",
            "MASNAA_JOB_ID": spec.job_id,
            "MASNAA_ATTEMPT": str(spec.attempt),
            "MASNAA_NODELIST": ",".join(s.node for s in spec.placement),
            "MASNAA_GPUS": str(sum(len(s.indices) for s in spec.placement)),
        }
    )
    if tag is not None:
        env[proctrack.RUN_TAG] = tag
    return env


class LocalExecutor(Executor):
    """Runs attempts under ``root`` (normally ``$MASNAA_HOME/jobs``)."""

    name = "local"
    capabilities = Capabilities(
        supports_adoption=True, enforces_time_limit=True, pins_gpus=True, multi_node=False
    )

    def __init__(
        self, root: Path, python: str | None = None, switch_users: bool | None = None,
        scratch_root: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.scratch_root = scratch_root or default_scratch_root()
        """Where jobs run as an account without a working directory get theirs."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Jobs run as other accounts must not reach any run's records (an older home
        # may have made it 0755).
        os.chmod(self.root, 0o700)
        self.python = python or sys.executable
        self.switch_users = os.geteuid() == 0 if switch_users is None else switch_users
        """Whether a spec's ``run_as`` is honoured: only root can switch accounts."""
        # Shims this object spawned: kept only to reap them (no zombies), never for truth.
        self._children: dict[tuple[str, int], subprocess.Popen[bytes]] = {}

    def attempt_dir(self, job_id: str, attempt: int) -> Path:
        return records.attempt_dir(self.root, job_id, attempt)

    def log_files(self, job_id: str, attempt: int) -> tuple[Path, Path]:
        d = self.attempt_dir(job_id, attempt)
        return d / records.STDOUT, d / records.STDERR

    def log_paths(self, job_id: str, attempt: int) -> tuple[str, str]:
        out, err = self.log_files(job_id, attempt)
        return str(out), str(err)

    # -- start --------------------------------------------------------------------------------
    def start(self, spec: LaunchSpec) -> None:
        self._reap()
        d = self.attempt_dir(spec.job_id, spec.attempt)
        if (d / records.SPEC).exists():
            return
        account = self.account(spec)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d.parent, 0o700)  # made with the default mode
        workdir = Path(spec.workdir) if spec.workdir else d
        if spec.workdir and not workdir.is_dir():
            raise LaunchRejected(
                f"job {spec.job_id}: working directory {str(workdir)!r} does not exist on this "
                "machine; give an existing directory or none"
            )
        argv = list(spec.argv)
        script: Path | None = None
        if spec.script is not None:
            script = d / records.SCRIPT
            script.write_text(spec.script, encoding="utf-8")
            argv = list(script_argv(spec.script, str(script)))
        stdout = spec.stdout or str(d / records.STDOUT)
        stderr = spec.stderr or str(d / records.STDERR)
        lock_fd = os.open(d / records.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a shim of this attempt is alive: it was started already
            scratch = None
            if account is not None and not spec.workdir:
                # The run directory is not the job's; this one outlives the run.
                scratch = job_scratch(self.scratch_root, spec.job_id, account)
                workdir = scratch
            claimed = records.create_json(
                d / records.SPEC,
                {
                    "job_id": spec.job_id,
                    "attempt": spec.attempt,
                    "argv": argv,
                    "env": job_environment(spec, tag=_run_tag(spec), account=account),
                    "workdir": str(workdir),
                    "stdout": stdout,
                    "stderr": stderr,
                    "time_limit": spec.time_limit,
                    "kill_grace": spec.kill_grace,
                    "claimed_at": time.time(),
                    **({"script": str(script)} if script is not None else {}),
                    **({"run_as": _identity(account)} if account is not None else {}),
                    **({"scratch": str(scratch)} if scratch is not None else {}),
                },
            )
            if not claimed:
                if scratch is not None:
                    with contextlib.suppress(OSError):  # another run's files stay
                        os.rmdir(scratch)
                return
            with open(d / "shim.log", "ab") as shim_log:
                child = subprocess.Popen(
                    [self.python, "-m", "masnaa.executors.shim", str(d), "--lock-fd", str(lock_fd)],
                    stdin=subprocess.DEVNULL,
                    stdout=shim_log,
                    stderr=shim_log,
                    pass_fds=(lock_fd,),
                    start_new_session=True,
                    close_fds=True,
                )
            self._children[(spec.job_id, spec.attempt)] = child
        finally:
            # The shim holds the lock through its inherited copy; ours goes.
            os.close(lock_fd)

    def account(self, spec: LaunchSpec) -> pwd.struct_passwd | None:
        """The account ``spec`` runs as here; None: this process's own user."""
        if spec.run_as is None or not self.switch_users:
            return None
        try:
            account = pwd.getpwnam(spec.run_as)
        except KeyError:
            raise LaunchRejected(
                f"job {spec.job_id}: its tenant's jobs run as the Unix account "
                f"{spec.run_as!r}, which does not exist on this machine; create it, or name "
                "another one for the tenant (unix_user in the factory description)"
            ) from None
        if account.pw_uid == 0:
            raise LaunchRejected(
                f"job {spec.job_id}: its tenant's jobs would run as {spec.run_as!r}, which is "
                "root; name an unprivileged account for the tenant (unix_user)"
            )
        return account

    # -- stop ---------------------------------------------------------------------------------
    def stop(self, job_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        d = self.attempt_dir(job_id, attempt)
        if not (d / records.SPEC).exists() or (d / records.RESULT).exists():
            return
        records.create_json(
            d / records.STOP,
            {"grace": max(0.0, grace_seconds), "reason": reason, "requested_at": time.time()},
        )
        shim = records.read_json(d / records.SHIM)
        if shim and records.same_process(shim.get("pid"), shim.get("start_ticks")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(shim["pid"]), signal.SIGTERM)
        # No shim.json yet: the shim reads stop.json itself before spawning the job.

    # -- poll ---------------------------------------------------------------------------------
    def poll(self, job_id: str, attempt: int) -> Observed:
        d = self.attempt_dir(job_id, attempt)
        child = self._children.get((job_id, attempt))
        if child is not None and child.poll() is not None:
            del self._children[(job_id, attempt)]  # reaped
        result = records.read_json(d / records.RESULT)
        if result is not None:
            return _observed_exit(result)
        if not (d / records.SPEC).exists():
            # Never launched, or its records were deleted under it: then its shim and job
            # may still run, and must not run on beside the next run on the same GPUs.
            if proctrack.sweep_unrecorded(d):
                return Observed(
                    "lost", message="its run directory was deleted while it ran; what still "
                    "ran of it was stopped",
                )
            return Observed("absent")
        if child is not None and child.returncode is None:
            return Observed("running", started_at=self._started_at(d))
        if self._supervised(d):
            return Observed("running", started_at=self._started_at(d))
        # No supervisor holds the lock: the result may have landed just before it let go.
        result = records.read_json(d / records.RESULT)
        if result is not None:
            return _observed_exit(result)
        self._kill_orphans(d)
        return Observed(
            "lost",
            started_at=self._started_at(d),
            message="its supervisor is gone and no exit status was recorded",
        )

    @staticmethod
    def _supervised(d: Path) -> bool:
        try:
            fd = os.open(d / records.LOCK, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops the lock if we took it
        return False

    @staticmethod
    def _started_at(d: Path) -> float | None:
        job = records.read_json(d / records.JOB)
        return float(job["started_at"]) if job else None

    @staticmethod
    def _kill_orphans(d: Path) -> None:
        job = records.read_json(d / records.JOB)
        if job and records.same_process(job.get("pid"), job.get("start_ticks")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(job["pid"]), signal.SIGKILL)
        # Its supervisor is gone, so what the job detached went to init: found by its tag
        # (also a job whose pid was never recorded).
        spec = records.read_json(d / records.SPEC) or {}
        env = spec.get("env")
        tag = env.get(proctrack.RUN_TAG) if isinstance(env, dict) else None
        if isinstance(tag, str) and tag:
            proctrack.sweep(signal.SIGKILL, tag=tag, timeout=1.0, uids=records.run_uids(spec))

    def news(self) -> bool:
        # A shim this object spawned has exited: its run has a result to read.
        return self._reap() > 0

    def _reap(self) -> int:
        """Forget (and so reap) every shim that exited; how many did.

        A shim writes its run's result and only then exits, so a pass may settle
        the run from the result before ``poll`` sees the exit: without this the
        process would stay a zombie for as long as the loop lives.
        """
        ended = [key for key, child in self._children.items() if child.poll() is not None]
        for key in ended:
            del self._children[key]
        return len(ended)

    def running_attempts(self) -> list[tuple[str, int]]:
        """Attempts under ``root`` whose supervisor is alive (for orphan checks)."""
        found = []
        for lock in self.root.glob(f"*/*/{records.LOCK}"):
            d = lock.parent
            if self._supervised(d) and d.name.isdigit():
                found.append((d.parent.name, int(d.name)))
        return found

    def close(self) -> None:
        for child in self._children.values():
            child.poll()  # reap if done; the rest keep running on their own


def _identity(account: pwd.struct_passwd) -> dict[str, object]:
    """What the shim needs to drop to ``account``: numbers, resolved once here, and its
    supplementary groups as ``initgroups`` would set them."""
    return {
        "user": account.pw_name,
        "uid": account.pw_uid,
        "gid": account.pw_gid,
        "groups": os.getgrouplist(account.pw_name, account.pw_gid),
    }


def default_scratch_root() -> Path:
    """``$TMPDIR/masnaa-scratch-<euid>``: one per executor user, the same across restarts."""
    return Path(tempfile.gettempdir()) / f"masnaa-scratch-{os.geteuid()}"


def job_scratch(root: Path, job_id: str, account: pwd.struct_passwd) -> Path:
    """The working directory of ``job_id`` when it names none, the same for each of its
    runs, that only ``account`` may use, outside ``$MASNAA_HOME``.

    ``root`` is the executor user's, ``0711``: accounts enter their job's directory
    but cannot list the others'; nobody else can make or swap an entry in it, so the
    job's directory found there is the one made here. A ``root`` someone else made
    (or a link) refuses the launch rather than be trusted."""
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o711, parents=True)
    seen = os.lstat(root)
    if not stat.S_ISDIR(seen.st_mode) or seen.st_uid != os.geteuid():
        raise LaunchRejected(
            f"job {job_id}: the scratch root {str(root)!r} is not a directory of the "
            "executor's user: an operator must remove it"
        )
    os.chmod(root, 0o711)  # mkdir's mode went through the umask
    path = root / job_id
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    # A job's runs may be an account's, then another's (its tenant's account changed).
    os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
    os.chmod(path, 0o700)
    return path


def _run_tag(spec: LaunchSpec) -> str:
    """A token naming one run on this machine, whatever other homes run the same job id."""
    return f"{spec.job_id}.{spec.attempt}.{secrets.token_hex(8)}"


def _observed_exit(result: dict[str, object]) -> Observed:
    def _num(key: str) -> float | None:
        value = result.get(key)
        return float(value) if isinstance(value, int | float) else None

    code = result.get("exit_code")
    sig = result.get("signal")
    reason = result.get("reason")
    stop_reason = result.get("stop_reason")
    return Observed(
        "exited",
        exit_code=code if isinstance(code, int) else None,
        signal=sig if isinstance(sig, int) else None,
        reason=reason if reason in ("exited", "stopped", "time-limit", "launch-failed") else None,
        stop_reason=stop_reason if isinstance(stop_reason, str) else None,
        started_at=_num("started_at"),
        ended_at=_num("ended_at"),
        message=str(result.get("message") or ""),
    )
