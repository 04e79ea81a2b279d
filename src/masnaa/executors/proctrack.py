"""Every process a local run started, wherever it went (what Slurm calls *proctrack*).

Signalling the job's process group is not enough: a process that calls
``setsid`` (``setsid cmd &``, ``nohup``-and-detach, a daemon's double fork)
leaves the group and would outlive the run and its ``cancel``. Without cgroups
(which need privileges here) two unprivileged Linux mechanisms find such
processes, and the shim uses both:

1. **Descent.** The shim makes itself a *child subreaper*
   (``prctl(PR_SET_CHILD_SUBREAPER)``): an orphan among the job's processes
   (its parent exited, as in every daemonisation) is reparented to the shim
   rather than to init, so every process the job started is a descendant of
   the shim for as long as the shim lives, whatever its session, group or
   environment. This is the primary mechanism: a process cannot leave the
   tree by itself.
2. **A tag.** Each run's environment carries ``MASNAA_RUN_TAG``, a token
   unique to the run; processes of the caller's uid, or of the account the run
   runs as (``uids``), whose initial environment (``/proc/PID/environ``) holds
   it are the run's. This one also works when
   the shim is gone (a *lost* run: the orphans went to init) and for the
   instant between spawning the job and recording its pid. A process that
   clears its environment (``env -i``) or overwrites it (``setproctitle``)
   escapes the tag, not the descent.

A pid is only ever signalled with the start time it had when it was found
(``records.same_process``), so a recycled pid is left alone. The caller is
never signalled. Only the standard library is imported: the shim imports this.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from masnaa.executors import records

RUN_TAG = "MASNAA_RUN_TAG"
"""The environment variable naming a run (``job.attempt.random``) for the sweep."""

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>

_PROC = Path("/proc")


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans; False where the kernel
    cannot (not Linux, or a kernel older than 3.4): the tag alone then finds them."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # only here: the executor and tests never need it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class _Proc:
    __slots__ = ("pgid", "pid", "ppid", "ticks")

    def __init__(self, pid: int, ppid: int, pgid: int, ticks: int) -> None:
        self.pid, self.ppid, self.pgid, self.ticks = pid, ppid, pgid, ticks


def _processes() -> dict[int, _Proc]:
    """Every live (not zombie) process: pid → parent, group and start time."""
    found: dict[int, _Proc] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            continue
        pid = int(entry.name)
        found[pid] = _Proc(pid, int(fields[1]), int(fields[2]), int(fields[19]))
    return found


def _has_tag(pid: int, entry: bytes, uids: frozenset[int]) -> bool:
    path = _PROC / str(pid)
    try:
        if path.stat().st_uid not in uids:
            return False
        return entry in (path / "environ").read_bytes().split(b"\0")
    except OSError:
        return False  # gone, or not ours to read


def run_processes(
    *, tag: str | None, root: int | None, uids: frozenset[int] = frozenset()
) -> dict[int, _Proc]:
    """The run's live processes: descendants of ``root`` (the shim) and those of this
    uid, or of ``uids`` (the account a run runs as), whose environment carries ``tag``.
    Never this process."""
    procs = _processes()
    mine: dict[int, _Proc] = {}
    if root is not None:
        children: dict[int, list[int]] = {}
        for p in procs.values():
            children.setdefault(p.ppid, []).append(p.pid)
        todo = list(children.get(root, ()))
        while todo:
            pid = todo.pop()
            if pid not in mine:
                mine[pid] = procs[pid]
                todo.extend(children.get(pid, ()))
    if tag:
        entry = f"{RUN_TAG}={tag}".encode()
        owners = uids | {os.geteuid()}
        for p in procs.values():
            if p.pid not in mine and _has_tag(p.pid, entry, owners):
                mine[p.pid] = p
    mine.pop(os.getpid(), None)
    return mine


def _kill(p: _Proc, sig: int) -> bool:
    """Signal ``p`` if it is still the process found; False if it is not ours to signal."""
    # The start time must still match: the pid may have been recycled since the scan.
    if records.process_start_ticks(p.pid) == p.ticks:
        try:
            os.kill(p.pid, sig)
        except PermissionError:
            return False  # another user's (a setuid program): nothing to do about it
        except ProcessLookupError:
            pass
    return True


def sweep(
    sig: int,
    *,
    tag: str | None,
    root: int | None = None,
    skip_group: int | None = None,
    timeout: float = 5.0,
    uids: frozenset[int] = frozenset(),
) -> int:
    """Send ``sig`` to every process of the run; how many processes got it.

    SIGKILL is repeated until none of the run's processes is left alive (one may
    fork while being swept) or ``timeout`` seconds pass. Any other signal goes
    once to each process, rescanning until no new one appears (bounded the same
    way); members of ``skip_group`` (the job's process group, which the caller
    signals as a group) are left out so that no process gets it twice. ``uids``: the
    account the run runs as, whose tagged processes are the run's too.
    """
    seen: set[tuple[int, int]] = set()
    refused: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout
    while True:
        found = run_processes(tag=tag, root=root, uids=uids)
        targets = [
            p for p in found.values()
            if (p.pid, p.ticks) not in refused
            and (sig == signal.SIGKILL or ((p.pid, p.ticks) not in seen and p.pgid != skip_group))
        ]
        if not targets or time.monotonic() > deadline:
            return len(seen - refused)
        for p in targets:
            seen.add((p.pid, p.ticks))
            if not _kill(p, sig):
                refused.add((p.pid, p.ticks))
        if sig == signal.SIGKILL:
            time.sleep(0.005)  # let them die before looking again


def _shim_of(attempt_dir: Path, uid: int) -> _Proc | None:
    """The live shim whose argv names ``attempt_dir``, if any."""
    want = str(attempt_dir).encode()
    for p in _processes().values():
        path = _PROC / str(p.pid)
        try:
            if path.stat().st_uid != uid:
                continue
            argv = (path / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in argv and any(a.endswith(b"masnaa.executors.shim") for a in argv):
            return p
    return None


def sweep_unrecorded(attempt_dir: Path, timeout: float = 2.0) -> int:
    """SIGKILL what still runs of a run whose attempt directory was deleted under it:
    its shim (found by the directory its argv names) and the shim's descendants (all
    the job's processes, the shim being their subreaper). How many were killed.

    The tag's random part went with the directory, so a run whose shim is gone too
    cannot be told from another home's run of the same job id: it is left alone."""
    uid = os.geteuid()
    shim = _shim_of(attempt_dir, uid)
    if shim is None:
        return 0
    killed = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() <= deadline:
        alive = records.process_start_ticks(shim.pid) == shim.ticks
        if alive:
            _kill(shim, signal.SIGSTOP)  # it starts nothing more while its tree is killed
        found = list(run_processes(tag=None, root=shim.pid).values())
        if not found:
            if alive:
                killed += _kill(shim, signal.SIGKILL)
            break
        for p in found:
            killed += _kill(p, signal.SIGKILL)
        time.sleep(0.005)
    return killed
