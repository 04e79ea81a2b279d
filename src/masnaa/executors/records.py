"""The on-disk records of one local attempt, shared by the local executor and its shim.

An attempt lives in ``<root>/<job_id>/<attempt>/``. Its files, each written
atomically (temporary file, fsync, rename, fsync of the directory) so that a
crash leaves either the old state or the new one, never half a file:

- ``spec.json``: the claim. Its presence means "this attempt was started";
  it is created with ``link`` so that two launchers cannot both claim it.
  ``run_as`` (user, uid, gid, groups), when present, is the account the job
  runs as; ``scratch``, the job's working directory made for it (the same for
  every run of the job, see ``local``).
- ``lock``: held (``flock``) by the attempt's shim for its whole life. The
  lock, not a pid, is how liveness is judged: it cannot be fooled by pid reuse
  and is released by the kernel when the shim dies however it dies.
- ``shim.json``: the shim's pid and process start time, written once its
  signal handlers are installed (from then on SIGTERM means "stop gracefully").
- ``job.json``: the job's pid (= its process group) and start time.
- ``stop.json``: a stop request (grace, reason); the first one wins.
- ``result.json``: the exit status, written by the shim before it exits.
- ``script.sh``: the job's script, when it was given as one (run with ``/bin/sh``).
- ``stdout.log``, ``stderr.log``: the job's output unless the spec says otherwise.

Only the standard library is imported here: the shim starts with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SPEC = "spec.json"
LOCK = "lock"
SHIM = "shim.json"
JOB = "job.json"
STOP = "stop.json"
RESULT = "result.json"
STDOUT = "stdout.log"
STDERR = "stderr.log"
SCRIPT = "script.sh"


def attempt_dir(root: Path, job_id: str, attempt: int) -> Path:
    """Where the records and default logs of one attempt live."""
    if not job_id or "/" in job_id or job_id in (".", ".."):
        raise ValueError(f"job id {job_id!r} cannot name a directory")
    return root / job_id / str(attempt)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_tmp(path: Path, data: dict[str, Any]) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(data, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically and durably."""
    tmp = _write_tmp(path, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def create_json(path: Path, data: dict[str, Any]) -> bool:
    """Create ``path`` atomically unless it exists; True if this call created it."""
    tmp = _write_tmp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError):  # no record (a file where its folder goes)
        return None
    return data if isinstance(data, dict) else None


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone.

    A pid together with this number names one process for the life of the
    machine, which is what makes signalling a pid read from a file safe.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    state = fields[0]
    if state in (b"Z", b"X"):
        return None
    return int(fields[19])


def run_uids(spec: dict[str, Any]) -> frozenset[int]:
    """The uid a run's job runs as (``spec.json``'s ``run_as``), for ``proctrack``; empty
    when it runs as the executor's own user."""
    account = spec.get("run_as")
    uid = account.get("uid") if isinstance(account, dict) else None
    return frozenset({uid}) if isinstance(uid, int) else frozenset()


def same_process(pid: int | None, start_ticks: int | None) -> bool:
    """Whether ``pid`` still names the process that had ``start_ticks`` when recorded."""
    if not pid or start_ticks is None:
        return False
    return process_start_ticks(pid) == start_ticks

